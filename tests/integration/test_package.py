"""`chalice package` builds the deployable artifact: four functions, their triggers, and nothing dev-only in the zip."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.integration.test_cloudformation import project_copy, run_package


def test_chalice_package_builds_a_lean_lambda_zip(tmp_path: Path) -> None:
    # `currencies package` (in a copy of the project) writes the stage's policy files, then runs
    # `chalice package --merge-template` with the CloudFormation fragment.
    out = tmp_path / "package"
    result = run_package(project_copy(tmp_path / "project"), "dev", out)
    assert result.returncode == 0, result.stdout + result.stderr
    resources = json.loads((out / "sam.json").read_text())["Resources"]
    functions = {name for name, body in resources.items() if body["Type"] == "AWS::Serverless::Function"}
    # A deployed stage's writes need a SigV4 signature; reads stay public (every mode: tests/unit/test_access.py).
    api = resources["RestAPI"]["Properties"]["DefinitionBody"]
    security = {(path, verb): op.get("security") for path, ops in api["paths"].items() for verb, op in ops.items()}
    assert {key: value for key, value in security.items() if value} == {
        ("/currency", "post"): [{"sigv4": []}],
        ("/currency/{symbol}", "put"): [{"sigv4": []}],
        ("/currency/{symbol}", "delete"): [{"sigv4": []}],
    }
    assert functions == {"APIHandler", "RelayChanges", "IndexChanges", "TidyMetrics"}
    # Lambda's CPU follows memory: the two stream-rate functions get 1,024 MB, not the 128 MB default.
    assert resources["RelayChanges"]["Properties"]["MemorySize"] == 1024
    assert resources["IndexChanges"]["Properties"]["MemorySize"] == 1024
    # TRIM_HORIZON, not Chalice's LATEST: writes made before the mapping is enabled are relayed too.
    [stream] = resources["RelayChanges"]["Properties"]["Events"].values()
    assert stream["Type"] == "DynamoDB"
    assert stream["Properties"]["StartingPosition"] == "TRIM_HORIZON"
    events = resources["IndexChanges"]["Properties"]["Events"]
    assert [event["Type"] for event in events.values()] == ["SQS"]
    # The metrics janitor runs on a schedule, since the dev stage names a Pushgateway.
    [schedule] = resources["TidyMetrics"]["Properties"]["Events"].values()
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == "rate(5 minutes)"
    names = zipfile.ZipFile(out / "deployment.zip").namelist()
    assert "app.py" in names
    assert "chalicelib/consumer/indexer.py" in names
    top_level = {name.split("/")[0] for name in names}
    assert not top_level & {"boto3", "botocore", "moto", "currencies_local", "tests", "hypothesis"}
    assert "elasticsearch" in top_level
    # Ship only what runs: no gRPC or protobuf (opensearch-py 3.1+ pulls them in; requirements.txt pins 3.0.0),
    # no dev tools, and the whole zip under 5 MB (it was 10.7 MB with them).
    assert "opensearchpy" in top_level
    assert not {
        name for name in top_level if name.lower().startswith(("grpc", "google", "protobuf", "opensearch_protobufs"))
    }
    assert not top_level & {"pytest", "_pytest", "ruff", "rich", "click", "schemathesis", "s3transfer"}
    assert (out / "deployment.zip").stat().st_size < 5_000_000
