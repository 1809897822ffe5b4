"""`chalice package` builds the deployable artifact: four functions, their triggers, and nothing dev-only in the zip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from currencies_local.pipeline import PROJECT_DIR


def test_chalice_package_builds_a_lean_lambda_zip(tmp_path: Path) -> None:
    out = tmp_path / "package"
    chalice = Path(sys.executable).with_name("chalice")
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [str(chalice), "package", "--stage", "dev", str(out)],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    resources = json.loads((out / "sam.json").read_text())["Resources"]
    functions = {name for name, body in resources.items() if body["Type"] == "AWS::Serverless::Function"}
    assert functions == {"APIHandler", "RelayChanges", "IndexChanges", "TidyMetrics"}
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
