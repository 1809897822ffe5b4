"""`chalice package` builds the deployable artifact: four functions, their triggers, and nothing dev-only in the zip;
`currencies package` adds the bytecode Lambda's read-only /var/task cannot cache, and the functions load it."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.footprint import HANDLER_PROBE, HANDLERS, code_sources, stage_environment, unpack
from currencies_ops.deploy.bytecode import bytecode_name, template_runtimes
from tests.integration.test_cloudformation import project_copy, run_package
from tests.unit.test_bytecode import assert_unchecked_hash_bytecode

STAGE = "dev"


@dataclass(frozen=True)
class Package:
    project: Path
    out: Path
    output: str
    """What `currencies package` printed."""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Package:
    # `currencies package` (in a copy of the project) writes the stage's policy files, then runs
    # `chalice package --merge-template` with the CloudFormation fragment.
    work = tmp_path_factory.mktemp("package")
    project = project_copy(work / "project")
    result = run_package(project, STAGE, work / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    return Package(project, work / "out", result.stdout)


def test_chalice_package_builds_a_lean_lambda_zip(package: Package) -> None:
    out = package.out
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
    assert (out / "deployment.zip").stat().st_size < 5_000_000  # with the bytecode `currencies package` adds


def test_every_pyc_in_the_zip_is_unchecked_hash_bytecode_of_its_own_source(package: Package) -> None:
    """Only the modules app and chalicelib import get bytecode (all of it would take the zip over 5 MB);
    whether that covers what the functions load is the next test's question."""
    runtimes = template_runtimes(json.loads((package.out / "sam.json").read_text()))
    assert runtimes == {f"python{sys.version_info.major}.{sys.version_info.minor}"}
    [runtime] = runtimes
    with zipfile.ZipFile(package.out / "deployment.zip") as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        sources = {bytecode_name(name, runtime): name for name in names if name.endswith(".py")}
        pycs = [name for name in names if name.endswith(".pyc")]
        assert names == sorted(names)
        assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}  # chalice's, kept
        assert len(sources) > 500
        assert 100 < len(pycs) < len(sources)
        for pyc_name in pycs:
            assert pyc_name in sources, pyc_name  # no bytecode without its source beside it
            source = sources[pyc_name]
            assert pyc_name == importlib.util.cache_from_source(source, optimization="")
            assert_unchecked_hash_bytecode(archive.read(pyc_name), archive.read(source), source)
        compiled = {sources[name] for name in pycs}
    # Every module of chalicelib but the adapter of the engine dev does not use (CURRENCIES_SEARCH_ENGINE);
    # elasticsearch's client, not opensearch-py's.
    chalicelib = {name for name in sources.values() if name.startswith("chalicelib/")}
    assert chalicelib - compiled == {"chalicelib/sinks/opensearch.py"}
    assert "app.py" in compiled
    assert "elasticsearch/_sync/client/__init__.py" in compiled
    assert not {name for name in compiled if name.startswith("opensearchpy/")}
    output = " ".join(package.output.split())
    assert f"{len(pycs)} unchecked-hash .pyc files added to deployment.zip" in output
    assert f"of its {len(sources)} .py files; not followed: chalicelib.sinks.opensearch" in output


@pytest.mark.parametrize("handler", sorted(HANDLERS))
def test_each_function_loads_all_it_imports_from_the_bytecode(package: Package, tmp_path: Path, handler: str) -> None:
    """The zip extracted read-only with every file's mtime the extraction's (Lambda promises nothing better):
    `import app` and the handler's first-invocation imports compile nothing from source."""
    task = unpack(package.out / "deployment.zip", tmp_path / "task", bytecode=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CURRENCIES_", "AWS_", "PYTHON"))}
    env |= stage_environment(package.project, STAGE) | {"PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-v", "-c", HANDLER_PROBE.format(first_invocation=HANDLERS[handler])],
        cwd=task, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = code_sources(result.stderr, task)
    assert loaded["source"] == 0
    assert loaded["bytecode"] > 50  # app, chalicelib, chalice, prometheus_client, ... (boto3 is the runtime's)
