"""What a deployment costs before any work is done: the zip's size, cold imports, the consumer's memory.

Builds the package with `currencies package` (on a copy of app.py, chalicelib,
requirements.txt and .chalice, so a build never touches the work tree), sums the zip by
top-level package, and imports `app` in fresh processes with the stage's environment
variables, measuring `app`'s cumulative time as `python -X importtime` reports it, and
per function `import app` plus the imports its first invocation triggers (the clients
its handler builds, `HANDLERS`), three ways (`MODES`):
- project: from the work tree, bytecode cached (the number `python -X importtime` gives here);
- package as built, the Lambda way: deployment.zip extracted as it is, with the unchecked-hash
  .pyc files `currencies package` adds, into a read-only tree, with PYTHONDONTWRITEBYTECODE=1
  (/var/task is read-only: nothing can be cached there). `zipfile` gives every extracted file the
  time of extraction, not its entry's, and Lambda's extraction promises nothing either: the
  bytecode loads because it is hash-based and unchecked, not because timestamps happen to agree;
- package without bytecode: the same zip without its `__pycache__` entries, so every import
  compiles from source (a zip from `chalice deploy`, or one built by another Python version).
boto3/botocore come from this environment, as the Lambda runtime provides them. One extra
`python -v` run per function and way counts the package's modules loaded from bytecode and
those compiled from source, so a measurement can't silently be of the wrong thing.

Then the peak memory (VmHWM) of a fresh process whose consumer handles one batch of
1,000 messages against a local fake engine that answers bulk requests (the package as built).
Not ru_maxrss: Linux carries the parent's high-water mark across fork and exec into it, so it
reported this benchmark's own memory (45-78 MB) instead of the consumer's.

    python -m bench.footprint --json bench/results/footprint.json [--write-docs]
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
import threading
import uuid
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from bench.report import command_line, full_mode, machine, machine_line, publish
from currencies_local.lambda_events import sqs_event
from currencies_local.synthetic import random_table
from currencies_ops.deploy.package_command import Packaged, PackageError, build

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


def build_package(project: Path, stage: str, out: Path) -> Packaged:
    """`currencies package` (policies, CloudFormation fragment, `chalice package`) on a copy of the
    project's deployable files, so a build never touches the work tree."""
    source = out / "project"
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "deployments")
    shutil.copy2(project / "app.py", source)
    shutil.copy2(project / "requirements.txt", source)
    shutil.copytree(project / "chalicelib", source / "chalicelib", ignore=ignore)
    shutil.copytree(project / ".chalice", source / ".chalice", ignore=ignore)
    try:
        return build(stage, out / "package", region="us-east-1", deletion_protection=False, project_dir=source)
    except PackageError as error:
        raise click.ClickException(f"currencies package failed:\n{error}") from error


def unpack(archive: Path, directory: Path, *, bytecode: bool) -> Path:
    """Extract `archive` into a read-only `directory` (as /var/task); `bytecode` False leaves out
    its `__pycache__` entries. Every file gets the time of extraction, not its entry's."""
    with zipfile.ZipFile(archive) as opened:
        names = [name for name in opened.namelist() if bytecode or "__pycache__" not in name.split("/")]
        opened.extractall(directory, names)
    for path in sorted(directory.rglob("*"), reverse=True):  # files before their directories
        path.chmod(0o555 if path.is_dir() else path.stat().st_mode & 0o555)
    directory.chmod(0o555)
    return directory


def file_count(directory: Path) -> int:
    """Files under `directory`: a package tree must have as many after the measurements as before."""
    return sum(len(files) for _, _, files in os.walk(directory))


def zip_summary(path: Path, top: int = 10) -> dict[str, object]:
    """The zip's size and its largest top-level entries (compressed and uncompressed bytes)."""
    zipped: Counter[str] = Counter()
    raw: Counter[str] = Counter()
    bytecode = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".pyc"):
                bytecode += info.compress_size
            name = info.filename.split("/")[0]
            name = "*.dist-info (all)" if name.endswith(".dist-info") else name
            zipped[name] += info.compress_size
            raw[name] += info.file_size
    return {
        "bytes": path.stat().st_size,
        "mb": round(path.stat().st_size / 1e6, 2),
        "bytecode_mb": round(bytecode / 1e6, 2),
        "top_level": sorted(zipped),
        "largest": [
            {"name": name, "zipped_mb": round(size / 1e6, 3), "unzipped_mb": round(raw[name] / 1e6, 3)}
            for name, size in zipped.most_common(top)
        ],
    }


def cold_imports(
    directory: Path, env: Mapping[str, str], *, runs: int, write_bytecode: bool, top: int = 10
) -> ImportTiming:
    """`import app` in `runs` fresh processes; `write_bytecode`: after a run that caches it, else none written."""
    process_env = _process_env(env, write_bytecode)
    if write_bytecode:
        subprocess.run([sys.executable, "-c", "import app"], cwd=directory, env=process_env, check=True)
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


HANDLERS: dict[str, str] = {
    "api_handler": "clients.store()",
    "relay_changes": "clients.sns()",
    "index_changes": "clients.sink()",  # the SQS client only when a batch must delete (settle)
    "tidy_metrics": "clients.pushgateway(); clients.sqs()",
}
"""What each function's first invocation builds beyond `import app` (read from app.py): the clients
its handler asks `chalicelib.clients` for. Every invocation also makes the metrics pusher
(the `push_metrics` middleware) when a Pushgateway is configured."""

HANDLER_PROBE = """
import sys, time
started = time.perf_counter()
import app
from chalicelib import clients
clients.metrics_pusher()
{first_invocation}
print(round((time.perf_counter() - started) * 1000, 3))
"""


@dataclass
class HandlerTiming:
    handler: str
    import_ms: dict[str, float]
    """`import app` plus the imports the first invocation triggers (`-X importtime`): spread of runs."""
    app_ms: dict[str, float]
    """`import app` alone, in the same runs."""
    with_clients_ms: dict[str, float]
    """Wall time of the same, including building the clients (botocore loads its service models)."""
    loaded: dict[str, int] = field(default_factory=dict)
    """Modules of `directory` the same imports loaded from bytecode and compiled from source (`python -v`)."""
    first_invocation_imports: list[Importer] = field(default_factory=list)
    """The fastest run's largest imports after `app` (what the handler's first invocation pays for)."""


def invocation_imports(importtime: str) -> tuple[float, float, list[Importer]]:
    """From `-X importtime` output: `app`'s cumulative ms, that plus every top-level import after it,
    and those later imports (the handler's first invocation)."""
    rows = [
        (len(match[3]), Importer(match[4], int(match[2]) / 1000, int(match[1]) / 1000))
        for match in map(_IMPORT_LINE.match, importtime.splitlines())
        if match
    ]
    end = next(index for index, (depth, row) in enumerate(rows) if depth == 0 and row.module == "app")
    later = [row for depth, row in rows[end + 1 :] if depth == 0]
    app_ms = rows[end][1].cumulative_ms
    return app_ms, app_ms + sum(row.cumulative_ms for row in later), later


def handler_imports(
    directory: Path, env: Mapping[str, str], handler: str, *, runs: int, write_bytecode: bool, top: int = 5
) -> HandlerTiming:
    """Cold `import app` plus the handler's first-invocation imports in `runs` fresh processes."""
    process_env = _process_env(env, write_bytecode) | {"AWS_LAMBDA_FUNCTION_NAME": f"currencies-{handler}"}
    probe = HANDLER_PROBE.format(first_invocation=HANDLERS[handler])
    verbose = subprocess.run(
        [sys.executable, "-v", "-c", probe], cwd=directory, env=process_env, capture_output=True, text=True, check=False
    )  # also caches the bytecode when `write_bytecode`
    if verbose.returncode != 0:
        raise click.ClickException(f"{handler}'s first invocation failed in {directory}:\n{verbose.stderr[-3000:]}")
    measured: list[tuple[float, float, float, list[Importer]]] = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", probe],
            cwd=directory, env=process_env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise click.ClickException(f"{handler}'s first invocation failed in {directory}:\n{result.stderr[-3000:]}")
        app_ms, total_ms, later = invocation_imports(result.stderr)
        measured.append((total_ms, app_ms, float(result.stdout.split()[-1]), later))
    fastest = min(measured, key=lambda run: run[0])
    return HandlerTiming(
        handler=handler,
        import_ms=_spread([run[0] for run in measured]),
        app_ms=_spread([run[1] for run in measured]),
        with_clients_ms=_spread([run[2] for run in measured]),
        loaded=code_sources(verbose.stderr, directory),
        first_invocation_imports=sorted(fastest[3], key=lambda module: -module.cumulative_ms)[:top],
    )


_CODE_OBJECT = re.compile(r"# code object from '?(.+?)'?$")


def code_sources(verbose: str, directory: Path) -> dict[str, int]:
    """From `python -v` output: how many modules under `directory` were loaded from bytecode, how many
    compiled from source (the import system prints each module's code object's origin)."""
    root = str(directory.resolve()) + os.sep
    counted = {"bytecode": 0, "source": 0}
    for match in map(_CODE_OBJECT.match, verbose.splitlines()):
        if match and match[1].startswith(root):
            counted["bytecode" if match[1].endswith(".pyc") else "source"] += 1
    return counted


def _spread(values: list[float]) -> dict[str, float]:
    """Best (what the targets use), median and worst of the runs, in ms."""
    return {
        "best": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
        "runs": len(values),
    }


def _process_env(env: Mapping[str, str], write_bytecode: bool) -> dict[str, str]:
    """This environment without the project's settings or a PYTHONPATH, plus `env`; bytecode written or not."""
    process_env = {k: v for k, v in os.environ.items() if not k.startswith(("CURRENCIES_", "AWS_"))} | dict(env)
    for variable in ("PYTHONPATH", "PYTHONPYCACHEPREFIX", "PYTHONCHECKHASHBASEDPYCS"):
        process_env.pop(variable, None)  # each would change where bytecode is looked for, or whether it is used
    if write_bytecode:
        process_env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        process_env["PYTHONDONTWRITEBYTECODE"] = "1"
    return process_env


class FakeEngine(ThreadingHTTPServer):
    """Answers as an Elasticsearch node would for what the consumer asks: templates (missing, then
    put), indices (exist), and bulk (every item created); anything else (a metrics push) gets 200."""

    items = 0
    bulk_requests = 0


class _FakeEngineHandler(BaseHTTPRequestHandler):
    server: FakeEngine

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would flood the benchmark's output."""

    def _answer(self, status: int, body: Any = None) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_HEAD(self) -> None:
        self._answer(200)

    def do_GET(self) -> None:
        if self.path.startswith("/_index_template/"):
            self._answer(404, {"error": {"type": "resource_not_found_exception"}, "status": 404})
        else:
            self._answer(200, {"version": {"number": "9.0.0"}, "tagline": "You Know, for Search"})

    def do_PUT(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        """Bulk (elasticsearch-py sends it as PUT, opensearch-py as POST); anything else is acknowledged."""
        body = self._body()
        if "_bulk" not in self.path:
            self._answer(200, {"acknowledged": True})
            return
        items, lines = [], iter(body.splitlines())
        for line in lines:
            if not line.strip():
                continue
            (operation, meta), *_ = json.loads(line).items()
            if operation != "delete":
                next(lines, None)  # the document
            status = 201 if operation == "create" else 200
            items.append({operation: {"_index": meta.get("_index"), "_id": meta.get("_id"), "status": status,
                                      "result": "created" if status == 201 else "updated", "_version": 1}})  # fmt: skip
        self.server.items += len(items)
        self.server.bulk_requests += 1
        self._answer(200, {"took": 1, "errors": False, "items": items})


MEMORY_PROBE = """
import json, re, sys, time
def peak_kb():  # this process's own peak resident memory (ru_maxrss would include its parent's)
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read())[1])
import app
after_import = peak_kb()
with open(sys.argv[1]) as file:
    event = json.load(file)
after_event = peak_kb()
class Context:
    function_name = "currencies-index_changes"
    aws_request_id = "bench-footprint"
    memory_limit_in_mb = 512
    def get_remaining_time_in_millis(self):
        return 60_000
started = time.perf_counter()
response = app.index_changes(event, Context())
seconds = time.perf_counter() - started
print(json.dumps({"after_import_kb": after_import, "after_event_kb": after_event, "peak_kb": peak_kb(),
                  "failures": len(response["batchItemFailures"]), "invocation_s": seconds}))
"""


def consumer_batch_event(messages: int) -> dict[str, Any]:
    """An SQS event of `messages` change messages in SNS envelopes, as Lambda hands the consumer."""
    symbols = [f"{a}{b}{c}" for a in "ABCDEFGH" for b in "ABCDE" for c in "ABCDE"]
    changes = random_table(messages, symbols, seed=1).changes()
    bodies = [
        {
            "MessageId": str(uuid.UUID(int=n)),
            "ReceiptHandle": f"handle-{n}",
            "Body": json.dumps(
                {"Type": "Notification", "MessageId": str(uuid.UUID(int=n)), "Message": change.to_json()}
            ),
            "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1800000000000"},
        }
        for n, change in enumerate(changes)
    ]
    return sqs_event(bodies, "arn:aws:sqs:us-east-1:123456789012:currency-queue", "us-east-1")


def consumer_peak_memory(directory: Path, env: Mapping[str, str], messages: int) -> dict[str, Any]:
    """Peak resident memory (VmHWM) of a fresh process (the package as built, as Lambda) whose consumer
    handles one batch of `messages`, against a local fake engine answering bulk (no engine's memory is
    counted: it is another process)."""
    engine = FakeEngine(("127.0.0.1", 0), _FakeEngineHandler)
    threading.Thread(target=engine.serve_forever, name="fake-engine", daemon=True).start()
    url = f"http://127.0.0.1:{engine.server_address[1]}"
    overrides = {
        "CURRENCIES_SEARCH_ENGINE": "elasticsearch",
        "CURRENCIES_SEARCH_URL": url,
        "CURRENCIES_PUSHGATEWAY_URL": url,
        "CURRENCIES_PARTIAL_BATCH_RESPONSE": "true",
        "CURRENCIES_BATCH_SIZE": str(messages),
        "CURRENCIES_BATCH_WINDOW_S": "1",
        "AWS_LAMBDA_FUNCTION_NAME": "currencies-index_changes",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    process_env = _process_env({**env, **overrides}, write_bytecode=False)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as event_file:
            json.dump(consumer_batch_event(messages), event_file)
            event_file.flush()
            result = subprocess.run(
                [sys.executable, "-c", MEMORY_PROBE, event_file.name],
                cwd=directory, env=process_env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
    finally:
        engine.shutdown()
        engine.server_close()
    if result.returncode != 0:
        raise click.ClickException(f"the consumer failed on its batch:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.splitlines()[-1])
    if measured["failures"] or engine.items == 0:
        raise click.ClickException(
            f"the consumer did not index its batch ({measured['failures']} failed, {engine.items} bulk items): "
            f"its memory would not be a real batch's\n{result.stderr[-3000:]}"
        )
    return {
        "messages": messages,
        "engine": "local fake HTTP server answering bulk (every item created)",
        "bulk_requests": engine.bulk_requests,
        "bulk_items": engine.items,
        "failures": measured["failures"],
        "invocation_s": round(measured["invocation_s"], 3),
        "after_import_mb": round(measured["after_import_kb"] / 1024, 1),
        "after_event_mb": round(measured["after_event_kb"] / 1024, 1),
        "peak_mb": round(measured["peak_kb"] / 1024, 1),
    }


PROJECT_MODE = "project, bytecode cached"
LAMBDA_MODE = "package as built (Lambda)"
SOURCE_MODE = "package without bytecode"
MODES = {PROJECT_MODE: True, LAMBDA_MODE: False, SOURCE_MODE: False}
"""Each way of importing, and whether its processes write bytecode (only into the work tree's cache)."""
TARGETS_MS = {"index_changes": 150.0, "*": 300.0}
"""Issue 10: cold import of the consumer's handler < 150 ms, of every handler < 300 ms (the Lambda way)."""
TARGET_ZIP_MB = 5.0


def show(summary: dict[str, Any], imports: dict[str, ImportTiming]) -> None:
    table = Table(title=f"deployment.zip: {summary['mb']} MB, bytecode {summary['bytecode_mb']} MB of it")
    for column in ("top-level entry", "zipped MB", "unzipped MB"):
        table.add_column(column, justify="left" if column == "top-level entry" else "right")
    for row in summary["largest"]:
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


def markdown(result: dict[str, Any], command: str) -> str:
    """The doc section: zip, cold import per function (three ways), the consumer's peak memory."""
    zip_info, memory, bytecode = result["zip"], result["consumer_memory"], result["bytecode"]
    zip_verdict = "met" if zip_info["mb"] < TARGET_ZIP_MB else "missed"
    if bytecode["skipped"]:
        added = f"no bytecode added ({bytecode['skipped']})"
    else:
        added = (
            f"{bytecode['compiled']} unchecked-hash .pyc files for {bytecode['runtime']}, {zip_info['bytecode_mb']} MB "
            f"of it; {bytecode['bytes_before'] / 1e6:.2f} MB without them"
        )
    lines = [
        f"Stage `{result['stage']}`, built by `currencies package`; {result['mode']} run, "
        f"{result['runs']} fresh process(es) per measurement.",
        "",
        f"**deployment.zip: {zip_info['mb']} MB** ({added}; target < {TARGET_ZIP_MB:g} MB: {zip_verdict}); "
        "largest entries: " + ", ".join(f"{row['name']} {row['zipped_mb']:.2f} MB" for row in zip_info["largest"][:5]),
        "",
        "Cold import per function: `import app` plus the imports its first invocation triggers (the clients "
        "its handler builds; the metrics pusher), ms, best / median. The Lambda way: the zip as built, read-only, "
        "PYTHONDONTWRITEBYTECODE=1; the target applies to it. Without bytecode: the same zip's sources only "
        "(what `chalice deploy` ships). Modules of the package loaded from bytecode / compiled from source: "
        "one `python -v` run, the Lambda way.",
        "",
        "| function | first invocation builds | Lambda way: import app | + first invocation | target "
        "| without bytecode: import app + first invocation | bytecode cached (project) "
        "| Lambda way incl. building clients | modules from .pyc / compiled | largest later imports |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for handler, builds in HANDLERS.items():
        lam = result["handlers"][LAMBDA_MODE][handler]
        sources = result["handlers"][SOURCE_MODE][handler]
        cached = result["handlers"][PROJECT_MODE][handler]
        target = TARGETS_MS.get(handler, TARGETS_MS["*"])
        verdict = "met" if lam["import_ms"]["best"] < target else "missed"
        later = ", ".join(
            f"{module['module']} {module['cumulative_ms']:.0f}" for module in lam["first_invocation_imports"][:3]
        )
        lines.append(
            f"| {handler} | `{builds}` | {lam['app_ms']['best']:.0f} / {lam['app_ms']['median']:.0f} "
            f"| **{lam['import_ms']['best']:.0f}** / {lam['import_ms']['median']:.0f} | < {target:.0f}: {verdict} "
            f"| {sources['import_ms']['best']:.0f} / {sources['import_ms']['median']:.0f} "
            f"| {cached['import_ms']['best']:.0f} / {cached['import_ms']['median']:.0f} "
            f"| {lam['with_clients_ms']['best']:.0f} / {lam['with_clients_ms']['median']:.0f} "
            f"| {lam['loaded']['bytecode']} / {lam['loaded']['source']} | {later or 'none'} |"
        )
    lines += [
        "",
        f"Peak memory of the consumer handling one {memory['messages']:,}-message batch (VmHWM of a fresh "
        f"process, the package as built; engine: {memory['engine']}, which answered "
        f"{memory['bulk_requests']} bulk request(s) of {memory['bulk_items']:,} items; "
        f"{memory['failures']} message(s) failed): after `import app` {memory['after_import_mb']} MB, with the "
        f"event parsed {memory['after_event_mb']} MB, **peak {memory['peak_mb']} MB** "
        f"(invocation {memory['invocation_s']:.2f} s).",
        "",
        machine_line(result["machine"]),
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--stage", default="dev", show_default=True, help="The stage to package and whose environment to use.")
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=PROJECT_DIR,
    help="Measure this copy of the project instead (e.g. a checkout of an older commit).",
)
@click.option("--runs", type=int, help="Fresh processes per import measurement [default: 5 full, 2 quick].")
@click.option("--messages", default=1000, show_default=True, help="Messages in the consumer's batch (peak memory).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write results here.")
@click.option("--write-docs", is_flag=True, help="Write the tables into docs/benchmarks.md (bench:footprint).")
def main(  # noqa: PLR0917 - click passes every option
    stage: str, project: Path, runs: int | None, messages: int, json_path: Path | None, write_docs: bool
) -> None:
    """Measure the Lambda zip's size, each function's cold import and the consumer's peak memory."""
    full = full_mode()
    runs = runs or (5 if full else 2)
    env = stage_environment(project, stage)
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as temporary:
        out = Path(temporary)
        with console.status("currencies package"):
            packaged = build_package(project, stage, out)
        summary = zip_summary(packaged.archive)
        directories = {
            PROJECT_MODE: project,
            LAMBDA_MODE: unpack(packaged.archive, out / "lambda", bytecode=True),
            SOURCE_MODE: unpack(packaged.archive, out / "sources", bytecode=False),
        }
        files = {mode: file_count(directories[mode]) for mode in (LAMBDA_MODE, SOURCE_MODE)}
        with console.status("importing app"):
            imports = {
                mode: cold_imports(directories[mode], env, runs=runs, write_bytecode=write)
                for mode, write in MODES.items()
            }
        handlers: dict[str, dict[str, Any]] = {mode: {} for mode in MODES}
        with console.status("importing app per function"):
            for handler in HANDLERS:  # every mode per handler in turn: a slow moment hits them alike
                for mode, write in MODES.items():
                    timing = handler_imports(directories[mode], env, handler, runs=runs, write_bytecode=write)
                    handlers[mode][handler] = asdict(timing)
        with console.status(f"the consumer on a {messages}-message batch"):
            memory = consumer_peak_memory(directories[LAMBDA_MODE], env, messages)
        changed = [mode for mode, count in files.items() if file_count(directories[mode]) != count]
        if changed:
            raise click.ClickException(f"files were written into the package ({', '.join(changed)}): not as Lambda")
    show(summary, imports)
    result = {
        "mode": "full" if full else "quick",
        "machine": machine(),
        "stage": stage,
        "runs": runs,
        "python": sys.version.split()[0],
        "zip": summary,
        "bytecode": asdict(packaged.bytecode),
        "import_app": {mode: asdict(timing) for mode, timing in imports.items()},
        "handlers": handlers,
        "consumer_memory": memory,
    }
    text = markdown(result, command_line("footprint"))
    publish("footprint", result, text, json_path=json_path, write_docs=write_docs)


if __name__ == "__main__":
    main()
