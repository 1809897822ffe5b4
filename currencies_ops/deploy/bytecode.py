"""Compiled bytecode in deployment.zip, so a Lambda cold start loads modules instead of compiling them.

Lambda unzips the package into a read-only /var/task: Python can never write its
`__pycache__` there, so without bytecode in the zip every cold start compiles every module
it imports from source. This module adds, beside the .py entries the functions load, the .pyc
the import system looks for (`<dir>/__pycache__/<name>.cpython-311.pyc`), built by `py_compile`.

Which modules: a subset, because bytecode for all ~550 sources would more than double the zip
(2.9 -> 6.5 MB, over its 5 MB budget), and most of them never load. The subset is what the
functions can import (`loaded_modules`): a child process, with sys.path starting at the
extracted zip (as /var/task), boto3/botocore from this environment (the Lambda runtime provides
them), the stage's settings and no credentials, imports `app`, every module of `chalicelib`,
and what their functions import lazily; every module found under the extracted zip while doing
so is compiled, together with its packages' `__init__.py`. A module outside the subset still
works: it is compiled from source at its first import in each container, as without this module.
Modules the caller names (`left_out`, e.g. the search adapter of the engine a stage does not
use) are not imported, so neither are their dependencies. Anything else that does not import
this way stops the build (`BytecodeError`): it would fail in Lambda too, and skipping it would
leave its dependencies uncompiled unnoticed.

The .pyc files are:
- unchecked-hash (PEP 552): the import system loads them without looking at the source's
  mtime (zip entries keep it to 2 s and Lambda's extraction does not promise to keep it at all,
  so timestamp pycs could be judged stale) or hashing the source; they are right because they are
  built from exactly the source in the same zip (any `__pycache__` entry the zip already had is
  dropped: it was not);
- built only by the interpreter of the template's `Runtime` (bytecode is per minor version): any other
  interpreter adds nothing and says why (`skip_reason`);
- `optimize=0`: asserts and docstrings stay, as in a plain `python`;
- written deterministically: entries sorted by name, each original entry's bytes, timestamp,
  permissions and compression kept, each .pyc with its source's timestamp and permissions.
"""

from __future__ import annotations

import json
import os
import py_compile
import re
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

_RUNTIME = re.compile(r"python(\d+)\.(\d+)")
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
ENTRY_MODULE = "app"
"""What Lambda imports first (the handlers are `app.<function>`)."""
WALKED_PACKAGE = "chalicelib"
"""Every module of it is imported: a handler may reach any of them."""
PROBE_TIMEOUT_S = 120


class BytecodeError(RuntimeError):
    """The package cannot be imported as Lambda would import it; the message says which module and why."""


@dataclass(frozen=True)
class Interpreter:
    """What decides whether this interpreter's bytecode runs on a Lambda runtime."""

    implementation: str
    version: tuple[int, int]
    release_level: str
    """A pre-release (alpha, beta, candidate) may use another bytecode magic number than the final release."""
    platform: str = "linux"
    """Finding what to compile imports the package, whose native extensions are built for Lambda's Linux."""

    @classmethod
    def running(cls) -> Interpreter:
        return cls(sys.implementation.name, sys.version_info[:2], sys.version_info.releaselevel, sys.platform)


@dataclass(frozen=True)
class BytecodeOutcome:
    """What `add_bytecode` did to a zip (or why it did nothing)."""

    runtime: str
    compiled: int = 0
    sources: int = 0
    """The zip's .py files: those not compiled are compiled at their first import, if any."""
    skipped: str | None = None
    """Why no bytecode was added (None when it was)."""
    left_out: tuple[str, ...] = ()
    """Modules not imported while finding what to compile (the caller's choice)."""
    not_compilable: tuple[str, ...] = ()
    """Sources found but not compilable by this interpreter (so not importable either): shipped as they were."""
    bytes_before: int = 0
    bytes_after: int = 0


@dataclass(frozen=True)
class Probe:
    """What importing the package found: sources under its directory, and imports that failed."""

    found: frozenset[str]
    """Paths relative to the directory (posix), of every module file the import system found there."""
    failed: Mapping[str, str] = field(default_factory=dict)
    """Module -> error, for the entry module, the walked modules and the lazy imports."""


def template_runtimes(template: Mapping[str, Any]) -> set[str]:
    """Every `Runtime` the template's functions get: the SAM `Globals` and each function's own."""
    default = template.get("Globals", {}).get("Function", {}).get("Runtime")
    runtimes = {
        body.get("Properties", {}).get("Runtime", default)
        for body in template.get("Resources", {}).values()
        if body.get("Type") == SERVERLESS_FUNCTION
    }
    return {runtime for runtime in runtimes if runtime}


def skip_reason(runtimes: Collection[str], interpreter: Interpreter) -> str | None:
    """None when `interpreter` builds bytecode that every one of `runtimes` loads; otherwise why not."""
    if len(runtimes) != 1:
        found = ", ".join(sorted(runtimes)) or "none"
        return f"the template's functions must share one Python runtime (found: {found})"
    [runtime] = runtimes
    match = _RUNTIME.fullmatch(runtime)
    if match is None:
        return f"runtime {runtime!r} is not a Python runtime"
    wanted = (int(match[1]), int(match[2]))
    running = f"{interpreter.implementation} {'.'.join(map(str, interpreter.version))}"
    if interpreter.implementation != "cpython" or interpreter.version != wanted:
        return f"the functions run {runtime} but this is {running}: package with Python {wanted[0]}.{wanted[1]}"
    if interpreter.release_level != "final":
        return f"this is a {interpreter.release_level} release of {running}, whose bytecode may not load on {runtime}"
    if interpreter.platform != "linux":
        return f"the package's native extensions are built for Linux: they do not import on {interpreter.platform}"
    return None


def cache_tag(runtime: str) -> str:
    """The tag CPython names its bytecode with for a Lambda runtime: python3.11 -> cpython-311."""
    match = _RUNTIME.fullmatch(runtime)
    if match is None:
        raise ValueError(f"runtime {runtime!r} is not a Python runtime")
    return f"cpython-{match[1]}{match[2]}"


def bytecode_name(source: str, runtime: str) -> str:
    """Where the import system looks for `source`'s bytecode (importlib.util.cache_from_source, optimize 0)."""
    path = PurePosixPath(source)
    return str(path.parent / "__pycache__" / f"{path.stem}.{cache_tag(runtime)}.pyc")


def add_bytecode(
    archive: Path,
    runtimes: Collection[str],
    environment: Mapping[str, str],
    *,
    left_out: Collection[str] = (),
    interpreter: Interpreter | None = None,
) -> BytecodeOutcome:
    """Add an unchecked-hash .pyc for each module the functions can load (`loaded_modules` with the
    functions' `environment`) to `archive` (rewritten in place), if this interpreter may."""
    interpreter = interpreter or Interpreter.running()
    before = archive.stat().st_size
    reason = skip_reason(runtimes, interpreter)
    runtime = ", ".join(sorted(runtimes))
    if reason is not None:
        return BytecodeOutcome(runtime, skipped=reason, bytes_before=before, bytes_after=before)
    with zipfile.ZipFile(archive) as source_zip:
        entries = {
            info.filename: (info, source_zip.read(info))
            for info in source_zip.infolist()
            if "__pycache__" not in info.filename.split("/")
        }
        comment = source_zip.comment
    sources = {name for name in entries if name.endswith(".py")}
    with tempfile.TemporaryDirectory(prefix="currencies-bytecode-") as work:
        task = Path(work) / "task"
        with zipfile.ZipFile(archive) as source_zip:
            source_zip.extractall(task, [name for name in entries if not name.endswith("/")])
        probe = loaded_modules(task, environment, left_out=left_out)
        if probe.failed:
            failures = "; ".join(f"{module}: {error}" for module, error in sorted(probe.failed.items()))
            raise BytecodeError(f"the package does not import as Lambda would import it: {failures}")
        chosen = sorted(with_packages(probe.found & sources, sources))
        failed: list[str] = []
        for name in chosen:
            info, source = entries[name]
            compiled = compile_source(name, source, Path(work))
            if compiled is None:
                failed.append(name)
                continue
            # The .pyc takes its source's timestamp (chalice fixes them all at 1980-01-01), permissions
            # and compression.
            entries[bytecode_name(name, runtime)] = (info, compiled)
    _write_sorted(archive, entries, comment)
    return BytecodeOutcome(
        runtime,
        compiled=len(chosen) - len(failed),
        sources=len(sources),
        left_out=tuple(sorted(left_out)),
        not_compilable=tuple(failed),
        bytes_before=before,
        bytes_after=archive.stat().st_size,
    )


def with_packages(chosen: Collection[str], sources: Collection[str]) -> set[str]:
    """`chosen` plus the `__init__.py` of every package above each of them (importing a module runs them)."""
    result = set(chosen)
    for name in chosen:
        for parent in list(PurePosixPath(name).parents)[:-1]:  # not the zip's root, "."
            if (init := f"{parent}/__init__.py") in sources:
                result.add(init)
    return result


_PROBE = r"""
import ast, importlib, importlib.machinery, importlib.util, json, os, pkgutil, sys

root, entry, package, *left_out = sys.argv[1:]
sys.path.insert(0, root)
found, failed = set(), {}


class Recorder:
    # Every module file the path finder finds under root, even one whose execution then fails
    # (a library's `try: import x` whose x is in the zip but whose own imports are not).
    @staticmethod
    def find_spec(name, path=None, target=None):
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        origin = getattr(spec, "origin", None)
        if origin and os.path.realpath(origin).startswith(root + os.sep):
            found.add(os.path.relpath(os.path.realpath(origin), root).replace(os.sep, "/"))
        return spec


sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder), Recorder)


def excluded(name):
    return any(name == out or name.startswith(out + ".") for out in left_out)


def load(name, fromlist=()):
    try:
        return importlib.__import__(name, fromlist=fromlist) if fromlist else importlib.import_module(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
        return None


def walk(name):
    # The package and every module under it (pkgutil), except the left-out ones and what is under them.
    if excluded(name):
        seen_left_out.add(name)
        return
    module = load(name)
    walked.append(module)
    for info in pkgutil.iter_modules(getattr(module, "__path__", None) or [], name + "."):
        walk(info.name)


def lazy_imports(module):
    # `import x` / `from x import y` inside functions: they run at some invocation, not at import.
    source = getattr(module, "__file__", None)
    if not source or not source.endswith(".py"):
        return
    package = module.__package__ or ""
    tree = ast.parse(open(source, "rb").read(), source)
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                yield from ((alias.name, ()) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                name = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                yield name, tuple(alias.name for alias in node.names)


walked, seen_left_out = [], set()
load(entry)
walk(package)
for name in set(left_out) - seen_left_out:
    failed[name] = f"ModuleNotFoundError: named to be left out, but {package} has no such module"
for module in [sys.modules.get(entry), *walked]:
    for name, fromlist in lazy_imports(module) if module else ():
        if not excluded(name):
            load(name, fromlist)
print(json.dumps({"found": sorted(found), "failed": failed}))
"""


def loaded_modules(directory: Path, environment: Mapping[str, str], *, left_out: Collection[str] = ()) -> Probe:
    """What the functions can import from `directory` (an extracted zip): see the module's docstring.

    The child process gets `environment` (the functions' settings, no secrets) and nothing else
    from this one but an AWS configuration that points nowhere: importing must need neither
    credentials nor a network. `-I` keeps PYTHONPATH and the user's site-packages out, `-B`
    leaves `directory` as it was.
    """
    root = directory.resolve()
    env = {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        **environment,
    }
    command = [sys.executable, "-I", "-B", "-c", _PROBE, str(root), ENTRY_MODULE, WALKED_PACKAGE, *left_out]
    try:
        result = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise BytecodeError(f"importing the package took over {PROBE_TIMEOUT_S} s") from error
    if result.returncode != 0:
        raise BytecodeError(f"importing the package failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.splitlines()[-1])
    return Probe(frozenset(report["found"]), report["failed"])


def compile_source(name: str, source: bytes, work: Path) -> bytes | None:
    """The unchecked-hash .pyc of `source` (optimize 0), or None when it does not compile.

    The code object's file name is `name`, not the temporary copy's path, so the bytes depend only on
    the source; the import system replaces it with the real path when it loads the module. It is
    interned: marshal records whether it is, which otherwise depends on what this process interned
    before (pathlib interns path parts, so a top-level `app.py` may or may not be).
    """
    source_file = work / "source.py"
    source_file.write_bytes(source)
    target = work / "source.pyc"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a library's invalid escape sequences are its own business
            py_compile.compile(
                str(source_file),
                cfile=str(target),
                dfile=sys.intern(name),  # see the docstring
                doraise=True,
                optimize=0,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
    except py_compile.PyCompileError:
        return None
    return target.read_bytes()


def _write_sorted(archive: Path, entries: Mapping[str, tuple[zipfile.ZipInfo, bytes]], comment: bytes) -> None:
    """Write every entry (name -> entry whose timestamp, permissions and compression it takes, bytes)
    sorted by name into a new zip, then replace `archive` with it."""
    partial = archive.with_name(archive.name + ".partial")
    with zipfile.ZipFile(partial, "w") as target:
        target.comment = comment
        for name in sorted(entries):
            original, data = entries[name]
            info = zipfile.ZipInfo(name, date_time=original.date_time)
            info.external_attr = original.external_attr
            info.create_system = original.create_system
            info.compress_type = original.compress_type
            target.writestr(info, data)
    os.replace(partial, archive)
