"""Which deployment an operator command works on: its settings and, created on first use, its clients.

An operator names the deployment in one of three ways, so a command never guesses:
- `--stage NAME`: the stage's settings in `.chalice/config.json` (what its Lambdas get),
  with AWS credentials and region from the operator's own AWS configuration;
- `--local`: the settings of the `currencies up` running on this machine, read from its lock file;
- neither: the process environment (the CURRENCIES_* variables, AWS_* for boto3).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import ConfigError, Settings
from chalicelib.sinks.base import SearchEngine
from chalicelib.sinks.credentials import read_secret
from chalicelib.sinks.sink import connect

CHALICE_CONFIG = Path(".chalice") / "config.json"
# Every AWS call gives up in bounded time: an unreachable endpoint is an error to report, not a hang.
AWS_CONFIG = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"})
_HOW = (
    "name the deployment with --stage NAME (reads .chalice/config.json; run from the project directory), "
    "--local (the `currencies up` running on this machine), or set CURRENCIES_TABLE, CURRENCIES_SEARCH_URL "
    "and the other CURRENCIES_* variables"
)


class TargetError(RuntimeError):
    """No deployment could be found from what the operator gave; the message says what to do."""


@dataclass(frozen=True)
class Target:
    settings: Settings
    source: str
    """Where the settings came from, for the report (e.g. "stage dev")."""
    aws: Mapping[str, str] = field(default_factory=dict)
    """AWS_* settings that override boto3's own lookup (the local runtime's moto endpoint and dummy keys)."""

    @cached_property
    def _session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self.aws.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=self.aws.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=self.aws.get("AWS_SESSION_TOKEN"),
            region_name=self.aws.get("AWS_REGION") or self.aws.get("AWS_DEFAULT_REGION"),
        )

    @cached_property
    def dynamodb(self) -> Any:
        """The DynamoDB service resource (batch reads); `table` is the rates table on it."""
        return self._session.resource("dynamodb", endpoint_url=self.aws.get("AWS_ENDPOINT_URL"), config=AWS_CONFIG)

    @cached_property
    def table(self) -> Any:
        return self.dynamodb.Table(self.settings.table_name)

    @cached_property
    def sqs(self) -> Any:
        return self._session.client("sqs", endpoint_url=self.aws.get("AWS_ENDPOINT_URL"), config=AWS_CONFIG)

    @cached_property
    def sns(self) -> Any:
        return self._session.client("sns", endpoint_url=self.aws.get("AWS_ENDPOINT_URL"), config=AWS_CONFIG)

    @cached_property
    def search(self) -> SearchEngine:
        """The engine, its credentials (if any) read with the operator's AWS session, as the Lambdas read theirs."""
        endpoint = self.aws.get("AWS_ENDPOINT_URL")
        return connect(self.settings.search, lambda arn: read_secret(arn, session=self._session, endpoint_url=endpoint))

    def describe(self) -> str:
        """One line naming the table, the indices and the engine, for the report's header."""
        settings = self.settings
        return (
            f"{self.source}: table {settings.table_name}, indices {settings.rates_index} and "
            f"{settings.events_index} on {settings.search.engine} {settings.search.url}"
        )


def resolve(stage: str | None, local: bool, environ: Mapping[str, str] = os.environ) -> Target:
    """The deployment the operator named (see the module docstring), or a TargetError saying what to do."""
    if stage and local:
        raise TargetError("give either --stage or --local, not both")
    if stage:
        return from_stage(stage, CHALICE_CONFIG, environ)
    if local:
        return from_local(_lock_path())
    if "CURRENCIES_TABLE" not in environ:
        raise TargetError(f"no deployment given: {_HOW}")
    return Target(_settings(environ), "environment", _region(environ))


def from_stage(stage: str, config_path: Path, environ: Mapping[str, str]) -> Target:
    """The stage's `environment_variables` over the top-level ones, as Chalice gives them to the Lambdas."""
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise TargetError(f"{config_path} not found: run from the project directory, or {_HOW}") from None
    except ValueError as error:
        raise TargetError(f"{config_path} is not valid JSON: {error}") from None
    stages = config.get("stages") or {}
    if stage not in stages:
        raise TargetError(f"{config_path} has no stage {stage!r}; it has {', '.join(sorted(stages)) or 'none'}")
    # The Lambda runtime sets the region; an operator's comes from their own environment.
    region = _region(environ)
    variables = {
        **region,
        **(config.get("environment_variables") or {}),
        **(stages[stage].get("environment_variables") or {}),
    }
    return Target(_settings(variables), f"stage {stage}", region)


def from_local(lock_path: Path) -> Target:
    """The settings a running `currencies up` wrote into its lock file (it holds the lock while it runs)."""
    not_running = (
        f"`currencies up` is not running (no lock held at {lock_path}): start it in another terminal, "
        "or name a deployment with --stage NAME or the CURRENCIES_* variables"
    )
    try:
        lock = lock_path.open()
    except FileNotFoundError:
        raise TargetError(not_running) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: `currencies up` is running
        else:
            raise TargetError(not_running)
        text = lock.read().strip()
    try:
        details = json.loads(text)
        environment: dict[str, str] = details["environment"]
    except (ValueError, KeyError, TypeError):
        raise TargetError("`currencies up` is still starting; try again once it shows its endpoints") from None
    aws = {name: value for name, value in environment.items() if name.startswith("AWS_")}
    return Target(_settings(environment), f"local runtime (pid {details.get('pid', '?')})", aws)


def _region(environ: Mapping[str, str]) -> dict[str, str]:
    """The region variables (boto3 itself reads only AWS_DEFAULT_REGION; Lambda sets AWS_REGION)."""
    return {name: environ[name] for name in ("AWS_REGION", "AWS_DEFAULT_REGION") if name in environ}


def _settings(variables: Mapping[str, str]) -> Settings:
    try:
        return Settings.from_env(variables)
    except ConfigError as error:
        raise TargetError(str(error)) from None


def _lock_path() -> Path:
    # Imported here: currencies_local.cli registers this package's commands when it is imported.
    from currencies_local.cli import LOCK_PATH  # noqa: PLC0415

    return LOCK_PATH
