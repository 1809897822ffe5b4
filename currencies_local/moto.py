"""moto server, playing AWS (DynamoDB + Streams, SNS, SQS) in a child process of its own.

It runs as `currencies_local.moto_server`: moto's own app, with DynamoDB writes made atomic
as DynamoDB makes them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from currencies_local.processes import ManagedProcess, http_status

REGION = "us-east-1"
# moto accepts any credentials; fixed dummy ones keep boto3 from looking for real ones.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """Variables that point every boto3 client in this process at moto."""
    return {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION, "AWS_ENDPOINT_URL": endpoint_url}


def start_moto(host: str, port: int, log_dir: Path) -> ManagedProcess:
    process = ManagedProcess(
        "moto server",
        [sys.executable, "-m", "currencies_local.moto_server", "-H", host, "-p", str(port)],
        log_dir / "moto.log",
    )
    process.wait_until(lambda: http_status(f"http://{host}:{port}/moto-api/") is not None, timeout_s=30)
    return process
