"""`currencies provision` and `currencies configure-mappings`: the `chalice deploy` path's two steps.

    currencies provision --stage dev          # table, topic, queues; writes .chalice/config.json
    chalice deploy --stage dev
    currencies configure-mappings --stage dev # the mapping settings Chalice cannot set

Both use the caller's AWS credentials and region (boto3's usual chain: AWS_PROFILE,
AWS_ACCESS_KEY_ID..., AWS_REGION / AWS_DEFAULT_REGION, ~/.aws).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from currencies_ops.console import EXIT_UNCHECKED
from currencies_ops.deploy.mappings import MappingMissing
from currencies_ops.deploy.mappings import configure_mappings as apply_mapping_settings
from currencies_ops.deploy.policies import PolicyError, SearchAccess
from currencies_ops.deploy.provision import (
    ProvisionError,
    config_path,
    read_stage_environment,
    write_stage_config,
)
from currencies_ops.deploy.provision import (
    provision as create_stage,
)
from currencies_ops.deploy.stack import StageNames

OUTCOME_STYLES = {"created": "green", "updated": "yellow", "found": "dim"}
CONTEXT = {"help_option_names": ["-h", "--help"]}


def _stage_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--stage", required=True, metavar="NAME", help="Stage of .chalice/config.json (e.g. dev).")(
        function
    )


def _project_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--project-dir",
        type=click.Path(file_okay=False, exists=True, path_type=Path),
        default=Path.cwd,
        show_default="the current directory",
        help="The Chalice project (holding .chalice/config.json).",
    )(function)


@contextmanager
def _readable_aws_errors(console: Console, doing: str) -> Iterator[None]:
    """AWS and configuration errors as one sentence that says what to set; exit status 2."""
    try:
        yield
    except NoCredentialsError:
        _fail(
            console,
            doing,
            "no AWS credentials found: set AWS_PROFILE (a profile of ~/.aws/config) or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    except NoRegionError:
        _fail(console, doing, "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or region in your profile)")
    except (MappingMissing, ProvisionError, PolicyError) as error:
        _fail(console, doing, str(error))
    except ClientError as error:
        details = error.response.get("Error", {})
        _fail(console, doing, f"AWS refused {error.operation_name}: {details.get('Code')}: {details.get('Message')}")
    except BotoCoreError as error:
        _fail(console, doing, str(error))


def _fail(console: Console, doing: str, message: str) -> None:
    console.print(f"[red]could not {doing}:[/red]", escape(message))
    raise SystemExit(EXIT_UNCHECKED)


@click.command(context_settings=CONTEXT)
@_stage_option
@_project_option
@click.option(
    "--deletion-protection/--no-deletion-protection",
    default=None,
    help="Protect the table from deletion [default: on for a stage named prod, off otherwise].",
)
def provision(stage: str, project_dir: Path, deletion_protection: bool | None) -> None:
    """Create (or find) the stage's table, topic, queues and subscription, for `chalice deploy`.

    Idempotent: what exists is found, and brought to the expected settings when they differ.
    Then the stage's .chalice/config.json environment variables get the resources' names and
    ARNs (your other variables, such as CURRENCIES_SEARCH_URL, stay), and each function gets its
    own least-privilege policy file under .chalice/policies/<stage>/.

    Exit status: 0 done, 2 could not run (credentials, region, AWS refusals).

    \b
    Examples:
      currencies provision --stage dev
      currencies provision --stage prod            # deletion protection on
    """
    console = Console()
    protect = stage == "prod" if deletion_protection is None else deletion_protection
    if not config_path(project_dir).is_file():
        _fail(console, "provision", f"{config_path(project_dir)} not found: run this in the Chalice project")
    with _readable_aws_errors(console, f"provision stage {stage}"):
        # The policies name the indices provision is about to write into the stage, not older ones.
        names = StageNames(stage)
        indices = {"CURRENCIES_EVENTS_INDEX": names.events_index, "CURRENCIES_RATES_INDEX": names.rates_index}
        search = SearchAccess.from_environment({**read_stage_environment(project_dir, stage), **indices})
        report = create_stage(stage, boto3.Session(), search, deletion_protection=protect)
        written = write_stage_config(project_dir, report)
    table = Table(title=f"stage {stage} in {report.arns.account} / {report.arns.region}")
    for column in ("resource", "name", "outcome", "detail"):
        table.add_column(column)
    for step in report.steps:
        style = OUTCOME_STYLES[step.outcome]
        table.add_row(step.resource, step.name, f"[{style}]{step.outcome}[/{style}]", escape(step.detail))
    console.print(table)
    for path in written:
        console.print(f"wrote {escape(str(path.relative_to(project_dir)))}")
    console.print(f"next: chalice deploy --stage {stage}, then currencies configure-mappings --stage {stage}")


@click.command("configure-mappings", context_settings=CONTEXT)
@_stage_option
def configure_mappings(stage: str) -> None:
    """Give the deployed stream and queue mappings the settings Chalice cannot set.

    ReportBatchItemFailures on both; on the stream mapping bisecting, a retry limit, a record
    age limit and the stream-failures queue as on-failure destination; on the queue mapping a
    batch size above 10 with a batching window. Only what differs is changed; run it after
    every `chalice deploy` (a deploy sets the batch size and window again from app.py).

    Exit status: 0 done, 2 could not run (nothing deployed yet, credentials, region).

    \b
    Example:
      chalice deploy --stage dev && currencies configure-mappings --stage dev
    """
    console = Console()
    with _readable_aws_errors(console, f"configure the mappings of stage {stage}"):
        changes = apply_mapping_settings(stage, boto3.Session())
    table = Table(title=f"event source mappings of stage {stage}")
    for column in ("function", "source", "setting", "was", "now"):
        table.add_column(column)
    for change in changes:
        source = change.source.split(":")[2]
        if not change.changed:
            table.add_row(change.function, source, "[dim]as wanted[/dim]", "", "")
        for key, value in change.changed.items():
            table.add_row(change.function, source, key, escape(_shown(change.before.get(key))), escape(_shown(value)))
    console.print(table)


def _shown(value: Any) -> str:
    """A mapping setting as a person reads it: the destination's ARN, a list's items, `-` for unset."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return (value.get("OnFailure") or {}).get("Destination") or "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


"""For currencies_ops/cli.py to register."""
