"""What importing app.py loads, as a Lambda cold start does: no AWS SDK, no search-engine client.

Structural, not timed (bench/footprint.py measures the time): boto3 costs ~100 ms to import
and each engine client tens of ms, so they are imported only where a handler first needs
them (chalicelib.clients, chalicelib.stream.changes, chalicelib.sinks.sink.connect).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.footprint import PROJECT_DIR, stage_environment

# Top-level packages that must wait for the first handler that needs them.
DEFERRED = {
    "boto3",
    "s3transfer",
    "elasticsearch",
    "elastic_transport",
    "opensearchpy",
    "urllib3",
    "requests",
    "anyio",
    "grpc",
    "google",
}
# Third-party packages importing app.py may load. botocore only for chalicelib.stream.bus's
# `from botocore.exceptions import ...` (a few ms: no session, client or loader), checked below.
ALLOWED = {"chalice", "chalicelib", "prometheus_client", "botocore", "app"}

PROBE = """
import json, sys
import app
print(json.dumps(sorted(sys.modules)))
"""


def modules_after_import(env: dict[str, str]) -> set[str]:
    process_env = {k: v for k, v in os.environ.items() if not k.startswith(("CURRENCIES_", "AWS_"))} | env
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=PROJECT_DIR, env=process_env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"CURRENCIES_SEARCH_ENGINE": "opensearch"},
        {"CURRENCIES_CONSUMER_TRIGGER": "sns"},
    ],
    ids=["dev", "opensearch", "sns-trigger"],
)
def test_importing_app_loads_no_aws_sdk_and_no_engine_client(overrides: dict[str, str]) -> None:
    loaded = modules_after_import(stage_environment(PROJECT_DIR, "dev") | overrides)
    top_level = {name.partition(".")[0] for name in loaded}
    assert not top_level & DEFERRED
    third_party = {name for name in top_level if not name.startswith("_") and name not in sys.stdlib_module_names}
    assert third_party <= ALLOWED, third_party - ALLOWED
    botocore = {name for name in loaded if name.partition(".")[0] == "botocore"}
    heavy = {
        n for n in botocore if n not in ("botocore", "botocore.exceptions") and not n.startswith("botocore.vendored")
    }
    assert not heavy, heavy


def test_the_probe_sees_a_deferred_import_once_a_handler_needs_it() -> None:
    """The check above can fail: building the stream handler's SNS client does load boto3."""
    env = stage_environment(PROJECT_DIR, "dev")
    process_env = {k: v for k, v in os.environ.items() if not k.startswith(("CURRENCIES_", "AWS_"))} | env
    probe = PROBE.replace("import app\n", "import app\napp.clients.sns()\n")
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_DIR, env=process_env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "boto3" in json.loads(result.stdout.splitlines()[-1])
