"""`currencies package`: the deployable CloudFormation template and zip of a stage, with no AWS account.

It writes the functions' policy files (with CloudFormation's `${AWS::Region}` /
`${AWS::AccountId}` placeholders), the fragment of `currencies_ops.deploy.template`, then runs
`chalice package --merge-template`. Chalice needs a region to name things but no
credentials: the child process gets none, and no credentials file either, which proves it.
Then it adds compiled bytecode to deployment.zip (`currencies_ops.deploy.bytecode`) for the modules
the functions can import: Lambda's /var/task is read-only, so without it every cold start compiles
every module it imports.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chalicelib.config import ConfigError, SearchSettings
from chalicelib.sinks.sink import ADAPTERS
from currencies_ops.console import fail
from currencies_ops.deploy.bytecode import BytecodeError, BytecodeOutcome, add_bytecode, template_runtimes
from currencies_ops.deploy.policies import (
    SearchAccess,
    configure_stage_policies,
    for_cloudformation,
    policy_documents,
    write_policy_files,
)
from currencies_ops.deploy.template import deployed_functions, fragment, stage_arns

PROJECT_DIR = Path(__file__).resolve().parents[2]
FRAGMENT_FILE = "resources.json"
CHALICE_TIMEOUT_S = 900


class PackageError(RuntimeError):
    """The stage cannot be packaged; the message says why and what to change."""


@dataclass(frozen=True)
class Packaged:
    written: list[Path]
    """Every file written, deployment.zip last."""
    bytecode: BytecodeOutcome

    @property
    def archive(self) -> Path:
        return self.written[-1]


def _default_region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stage", required=True, metavar="NAME", help="Stage of .chalice/config.json to package (e.g. prod).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for sam.json, deployment.zip and the merged fragment [default: build/<stage>].",
)
@click.option(
    "--region",
    default=_default_region,
    show_default="$AWS_DEFAULT_REGION, else us-east-1",
    help="Region Chalice packages for (no credentials are used).",
)
@click.option(
    "--deletion-protection/--no-deletion-protection",
    default=None,
    help="Protect the table from deletion [default: on for prod, off otherwise].",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=PROJECT_DIR,
    show_default=True,
    help="The Chalice project (holding .chalice/config.json).",
)
def package(stage: str, out: Path | None, region: str, deletion_protection: bool | None, project_dir: Path) -> None:
    """Build the stage's SAM template (app + table, topic, queues, mapping settings) and its zip."""
    console = Console()
    out = (out or project_dir / "build" / stage).resolve()
    protect = stage == "prod" if deletion_protection is None else deletion_protection
    started = time.monotonic()
    try:
        packaged = build(stage, out, region=region, deletion_protection=protect, project_dir=project_dir)
    except PackageError as error:
        fail(console, False, f"package stage {stage}", str(error))
    _report(console, stage, region, packaged, protect=protect, seconds=time.monotonic() - started)


def build(stage: str, out: Path, *, region: str, deletion_protection: bool, project_dir: Path) -> Packaged:
    """Write the policy files and the fragment, run `chalice package`, add bytecode to its zip."""
    config_file = project_dir / ".chalice" / "config.json"
    config = json.loads(config_file.read_text())
    if stage not in config.get("stages", {}):
        raise PackageError(f"{config_file} has no stage {stage!r}; add it under 'stages'")
    environment = stage_environment(config, stage)
    if environment.get("CURRENCIES_CONSUMER_TRIGGER", "sqs") != "sqs":
        raise PackageError("the CloudFormation template wires the queue consumer: set CURRENCIES_CONSUMER_TRIGGER=sqs")
    try:
        search = SearchAccess.from_environment(environment)
    except (ValueError, KeyError) as error:
        raise PackageError(f"search settings of stage {stage!r}: {error}") from error

    documents = {name: for_cloudformation(doc) for name, doc in policy_documents(stage_arns(stage), search).items()}
    written = list(write_policy_files(project_dir, stage, documents))
    configured = copy.deepcopy(config)
    configure_stage_policies(configured, stage)
    if configured != config:
        config_file.write_text(json.dumps(configured, indent=2) + "\n")
        written.append(config_file)

    out.mkdir(parents=True, exist_ok=True)
    template = fragment(
        stage, deletion_protection=deletion_protection, search=search, functions=deployed_functions(environment)
    )
    fragment_file = out / FRAGMENT_FILE
    fragment_file.write_text(json.dumps(template, indent=2) + "\n")
    written.append(fragment_file)

    _run_chalice(project_dir, stage, fragment_file, out, region)
    sam = out / "sam.json"
    template = json.loads(sam.read_text())
    _check_merged(template)
    archive = out / "deployment.zip"
    functions_environment = {**environment, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    try:
        bytecode = add_bytecode(
            archive,
            template_runtimes(template),
            functions_environment,
            left_out=unused_search_adapters(functions_environment),
        )
    except (BytecodeError, ConfigError) as error:
        raise PackageError(f"bytecode for deployment.zip: {error}") from error
    return Packaged([*written, sam, archive], bytecode)


def unused_search_adapters(environment: Mapping[str, str]) -> tuple[str, ...]:
    """The search adapters a stage's functions never import: their client libraries get no bytecode.

    Compiling both clients would take the zip over 5 MB (elasticsearch alone is 1.1 MB of bytecode);
    a function whose engine is changed without packaging again still works, compiling its client at
    each cold start.
    """
    engine = SearchSettings.from_env(environment).engine
    return tuple(module for name, (module, _) in sorted(ADAPTERS.items()) if name != engine)


def stage_environment(config: Mapping[str, Any], stage: str) -> dict[str, str]:
    """The variables Chalice gives the stage's functions: the top level's, overridden by the stage's."""
    stage_config = config.get("stages", {}).get(stage, {})
    return {**config.get("environment_variables", {}), **stage_config.get("environment_variables", {})}


def credential_free_environment(region: str, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`base` without any AWS variable (keys, tokens, profiles, endpoints), plus the region alone.

    The config and credentials files point at nothing and the instance metadata service is
    off, so nothing Chalice runs can find credentials. The app's own `CURRENCIES_*` settings
    are left out too: the stage's config.json decides what is packaged (a `CURRENCIES_WRITE_AUTH=none`
    left in the shell from local work must not package an open API).
    """
    environment = {key: value for key, value in base.items() if not key.startswith(("AWS_", "CURRENCIES_"))}
    environment.update(
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return environment


def _chalice() -> str:
    beside = Path(sys.executable).with_name("chalice")
    found = str(beside) if beside.exists() else shutil.which("chalice")
    if found is None:
        raise PackageError("the chalice command is not installed (make install)")
    return found


def _run_chalice(project_dir: Path, stage: str, fragment_file: Path, out: Path, region: str) -> None:
    command = [
        _chalice(),
        "--project-dir",
        str(project_dir),
        "package",
        "--stage",
        stage,
        "--merge-template",
        str(fragment_file),
        str(out),
    ]
    try:
        result = subprocess.run(
            command,
            cwd=project_dir,
            env=credential_free_environment(region),
            capture_output=True,
            text=True,
            timeout=CHALICE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise PackageError(f"chalice package took over {CHALICE_TIMEOUT_S} s") from error
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise PackageError(f"chalice package exited with {result.returncode}:\n{tail}")


def _check_merged(template: Mapping[str, Any]) -> None:
    """A fragment entry naming a resource Chalice did not emit merges into a stub without a Type."""
    stubs = sorted(name for name, body in template.get("Resources", {}).items() if "Type" not in body)
    if stubs:
        raise PackageError(
            f"the fragment names resources chalice package did not create: {', '.join(stubs)} "
            "(did app.py's functions or their names change?)"
        )


def _report(console: Console, stage: str, region: str, packaged: Packaged, *, protect: bool, seconds: float) -> None:
    table = Table(title=f"stage {stage}, region {region}, {seconds:.1f} s", title_justify="left")
    table.add_column("file written")
    table.add_column("size", justify="right")
    for path in packaged.written:
        table.add_row(escape(_shown(path)), f"{path.stat().st_size:,} B")
    console.print(table)
    console.print(f"table deletion protection: {'on' if protect else 'off'}; no AWS credentials were used")
    _report_bytecode(console, packaged.bytecode)
    out = packaged.archive.parent
    console.print(
        "deploy with:\n"
        f"  aws cloudformation package --template-file {escape(_shown(out / 'sam.json'))} "
        f"--s3-bucket YOUR-BUCKET --output-template-file {escape(_shown(out / 'packaged.yaml'))}\n"
        f"  aws cloudformation deploy --template-file {escape(_shown(out / 'packaged.yaml'))} "
        f"--stack-name currencies-{stage} --capabilities CAPABILITY_IAM",
        soft_wrap=True,
    )


def _report_bytecode(console: Console, outcome: BytecodeOutcome) -> None:
    if outcome.skipped:
        console.print(
            f"[yellow]no bytecode added to deployment.zip[/]: {escape(outcome.skipped)}; every Lambda cold start "
            "will compile what it imports"
        )
        return
    left_out = f"; not followed: {', '.join(outcome.left_out)} (not this stage's engine)" if outcome.left_out else ""
    console.print(
        f"bytecode for {outcome.runtime}: {outcome.compiled} unchecked-hash .pyc files added to deployment.zip, "
        f"for the modules app and chalicelib import, of its {outcome.sources} .py files{escape(left_out)} "
        f"({outcome.bytes_before / 1e6:.2f} MB -> {outcome.bytes_after / 1e6:.2f} MB)"
    )
    if outcome.not_compilable:
        shown = ", ".join(outcome.not_compilable[:5]) + (", ..." if len(outcome.not_compilable) > 5 else "")
        console.print(
            f"{len(outcome.not_compilable)} .py file(s) do not compile on {outcome.runtime} (so cannot be "
            f"imported there either), shipped without bytecode: {escape(shown)}"
        )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
