"""What a deployment costs before any work is done: the Lambda zip's size, and the cold import of app.py.

Builds the package with `chalice package` (a copy of app.py, chalicelib, requirements.txt
and .chalice, so a build never touches the work tree), sums the zip by top-level package,
and imports `app` in fresh processes with the stage's environment variables, measuring
`app`'s cumulative time as `python -X importtime` reports it, two ways:
- project: from the work tree, bytecode cached (the number `python -X importtime` gives here);
- package: from the unzipped deployment.zip with no bytecode cache, as Lambda runs it (the
  zip holds no .pyc and /var/task is read-only, so every cold start compiles what it imports);
  boto3/botocore come from this environment, as the Lambda runtime provides them.

    python -m bench.footprint --json bench/results/footprint.json
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

PROJECT_DIR = Path(__file__).resolve().parents[1]
console = Console()
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


@dataclass
class Importer:
    module: str
    cumulative_ms: float
    self_ms: float


@dataclass
class ImportTiming:
    runs_ms: list[float]
    best_ms: float
    median_ms: float
    top: list[Importer] = field(default_factory=list)
    """The fastest run's modules with the largest cumulative import time."""


def stage_environment(project: Path, stage: str) -> dict[str, str]:
    """The variables a deployed function of `stage` gets: config.json's globals, then the stage's own."""
    config = json.loads((project / ".chalice" / "config.json").read_text())
    env = {**config.get("environment_variables", {}), **config["stages"][stage].get("environment_variables", {})}
    # A stage without a stream (local) still needs one for the stream handler's decorator.
    env.setdefault("CURRENCIES_STREAM_ARN", "arn:aws:dynamodb:us-east-1:123456789012:table/currency/stream/label")
    return {
        **env,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": f"currencies-{stage}-index_changes",
    }


def build_package(project: Path, stage: str, out: Path) -> Path:
    """`chalice package` on a copy of the project's deployable files; returns deployment.zip."""
    source = out / "project"
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "deployments")
    shutil.copy2(project / "app.py", source)
    shutil.copy2(project / "requirements.txt", source)
    shutil.copytree(project / "chalicelib", source / "chalicelib", ignore=ignore)
    shutil.copytree(project / ".chalice", source / ".chalice", ignore=ignore)
    _stand_in_policies(source / ".chalice", stage)
    chalice = Path(sys.executable).with_name("chalice")
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(
        [str(chalice), "package", "--stage", stage, str(out / "package")],
        cwd=source, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise click.ClickException(f"chalice package failed:\n{result.stderr[-3000:]}")
    return out / "package" / "deployment.zip"


def _stand_in_policies(chalice_dir: Path, stage: str) -> None:
    """An empty policy for each policy file the stage names but nobody generated yet (`currencies provision`
    or `currencies package` writes them): the zip does not depend on them, and Chalice refuses a missing one."""
    config = json.loads((chalice_dir / "config.json").read_text())
    settings = config["stages"][stage]
    named = [settings.get("iam_policy_file")] + [
        function.get("iam_policy_file") for function in settings.get("lambda_functions", {}).values()
    ]
    for name in filter(None, named):
        path = chalice_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"Version": "2012-10-17", "Statement": []}))


def zip_summary(path: Path, top: int = 10) -> dict[str, object]:
    """The zip's size and its largest top-level entries (compressed and uncompressed bytes)."""
    zipped: Counter[str] = Counter()
    raw: Counter[str] = Counter()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.split("/")[0]
            name = "*.dist-info (all)" if name.endswith(".dist-info") else name
            zipped[name] += info.compress_size
            raw[name] += info.file_size
    return {
        "bytes": path.stat().st_size,
        "mb": round(path.stat().st_size / 1e6, 2),
        "top_level": sorted(zipped),
        "largest": [
            {"name": name, "zipped_mb": round(size / 1e6, 3), "unzipped_mb": round(raw[name] / 1e6, 3)}
            for name, size in zipped.most_common(top)
        ],
    }


def cold_imports(directory: Path, env: Mapping[str, str], *, runs: int, bytecode: bool, top: int = 10) -> ImportTiming:
    """`import app` in `runs` fresh processes; `bytecode` False: no cache read or written in `directory`."""
    process_env = {k: v for k, v in os.environ.items() if not k.startswith("CURRENCIES_")} | dict(env)
    process_env.pop("PYTHONPATH", None)
    if bytecode:
        process_env.pop("PYTHONDONTWRITEBYTECODE", None)
        subprocess.run([sys.executable, "-c", "import app"], cwd=directory, env=process_env, check=True)
    else:
        process_env["PYTHONDONTWRITEBYTECODE"] = "1"
        for cache in directory.rglob("__pycache__"):
            shutil.rmtree(cache)
    timings: list[tuple[float, list[Importer]]] = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import app"],
            cwd=directory, env=process_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise click.ClickException(f"import app failed in {directory}:\n{result.stderr[-3000:]}")
        modules = _app_subtree(result.stderr)
        timings.append((modules[-1].cumulative_ms, modules))
    best_ms, best_modules = min(timings, key=lambda timing: timing[0])
    runs_ms = [round(ms, 1) for ms, _ in timings]
    return ImportTiming(
        runs_ms=runs_ms,
        best_ms=round(best_ms, 1),
        median_ms=round(statistics.median(runs_ms), 1),
        top=sorted(best_modules, key=lambda module: -module.cumulative_ms)[:top],
    )


def _app_subtree(importtime: str) -> list[Importer]:
    """`app` and what it imported (last), not the interpreter's own start-up (`site`, `encodings`).

    `-X importtime` prints a module after everything it imported, indented by depth.
    """
    rows = [
        (len(match[3]), Importer(match[4], int(match[2]) / 1000, int(match[1]) / 1000))
        for match in map(_IMPORT_LINE.match, importtime.splitlines())
        if match
    ]
    end = next(index for index, (depth, row) in enumerate(rows) if depth == 0 and row.module == "app")
    start = end
    while start > 0 and rows[start - 1][0] > 0:
        start -= 1
    return [row for _, row in rows[start : end + 1]]


def show(summary: dict[str, object], imports: dict[str, ImportTiming]) -> None:
    table = Table(title=f"deployment.zip: {summary['mb']} MB")
    for column in ("top-level entry", "zipped MB", "unzipped MB"):
        table.add_column(column, justify="left" if column == "top-level entry" else "right")
    for row in summary["largest"]:  # type: ignore[attr-defined]
        table.add_row(row["name"], f"{row['zipped_mb']:.3f}", f"{row['unzipped_mb']:.3f}")
    console.print(table)
    for mode, timing in imports.items():
        table = Table(title=f"import app ({mode}): best {timing.best_ms} ms, median {timing.median_ms} ms")
        table.add_column("module (fastest run)")
        table.add_column("cumulative ms", justify="right")
        table.add_column("self ms", justify="right")
        for module in timing.top:
            table.add_row(module.module, f"{module.cumulative_ms:.1f}", f"{module.self_ms:.1f}")
        console.print(table)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stage", default="dev", show_default=True, help="The stage to package and whose environment to use.")
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=PROJECT_DIR,
    help="Measure this copy of the project instead (e.g. a checkout of an older commit).",
)
@click.option("--runs", default=5, show_default=True, help="Fresh processes per import measurement.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write results here.")
def main(stage: str, project: Path, runs: int, json_path: Path | None) -> None:
    """Measure the Lambda zip's size and the cold import time of app.py."""
    env = stage_environment(project, stage)
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as temporary:
        out = Path(temporary)
        with console.status("chalice package"):
            archive = build_package(project, stage, out)
        summary = zip_summary(archive)
        unzipped = out / "unzipped"
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(unzipped)
        with console.status("importing app"):
            imports = {
                "project, bytecode cached": cold_imports(project, env, runs=runs, bytecode=True),
                "package as in Lambda, no bytecode": cold_imports(unzipped, env, runs=runs, bytecode=False),
            }
    show(summary, imports)
    if json_path:
        result = {
            "stage": stage,
            "python": sys.version.split()[0],
            "zip": summary,
            "import_app": {mode: asdict(timing) for mode, timing in imports.items()},
        }
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
