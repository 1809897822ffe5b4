"""Bytecode in deployment.zip: which interpreter may build it, which modules get it, where it goes, and that
Python loads it unchecked."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chalicelib.sinks.sink import ADAPTERS
from currencies_ops.deploy.bytecode import (
    BytecodeError,
    Interpreter,
    add_bytecode,
    bytecode_name,
    skip_reason,
    template_runtimes,
    with_packages,
)
from currencies_ops.deploy.package_command import unused_search_adapters

RUNNING = Interpreter.running()
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
FIXED = (1980, 1, 1, 0, 0, 0)
UNCHECKED_HASH = 0b01
"""PEP 552: the pyc header's flags word; bit 0 = hash-based, bit 1 = check_source (so 0b11 is checked)."""
SETTINGS = {"STAGE_SETTING": "on"}


def assert_unchecked_hash_bytecode(pyc: bytes, source: bytes, name: str) -> None:
    """The header of `pyc` (PEP 552): this Python's magic number, unchecked hash, and `source`'s hash."""
    assert pyc[:4] == importlib.util.MAGIC_NUMBER, name
    assert int.from_bytes(pyc[4:8], "little") == UNCHECKED_HASH, name
    assert pyc[8:16] == importlib.util.source_hash(source), name


LEFT_OUT = ("chalicelib.engine",)

SOURCES = {
    # The functions' settings reach the import; credentials and the shell's secrets do not.
    "app.py": (
        b'"""The entry module."""\nimport os\n\nimport click\nimport top\nfrom chalicelib import mod\n\n'
        b'if os.environ.get("STAGE_SETTING") != "on":\n    raise RuntimeError("no settings")\n'
        b'if {"AWS_ACCESS_KEY_ID", "CURRENCIES_SECRET"} & set(os.environ):\n    raise RuntimeError("leaked")\n'
        b"assert click.FROM_ZIP  # the zip comes first on sys.path, as /var/task does\n"
    ),
    "chalicelib/__init__.py": b'"""A package."""\n',
    "chalicelib/mod.py": (
        b'"""Kept: optimize 0."""\n\ndef check(value):\n    assert value, "asserts stay"\n    return "from zip"\n\n\n'
        b"def lazily():\n    import boto3  # this environment's, as the Lambda runtime's\n    import lazy_dep\n"
        b"    from chalicelib.engine import Client  # left out: not followed\n"
    ),
    "chalicelib/sub/__init__.py": b"",
    "chalicelib/sub/deep.py": b"import dep\n",  # nothing imports it: the walk does
    "chalicelib/engine.py": b"import heavy\n\nClient = heavy.Client\n",
    "heavy/__init__.py": b"from heavy.client import Client\n",
    "heavy/client.py": b"class Client:\n    pass\n",
    "dep/__init__.py": b"",
    "lazy_dep.py": b"VALUE = 1\n",
    "click.py": b"FROM_ZIP = True\n",
    # latin-1; a module whose execution fails inside a try (found, so compiled); one that does not compile.
    "top.py": (
        b"# -*- coding: latin-1 -*-\nNAME = '\xe9t\xe9'\ntry:\n    import optional\nexcept ImportError:\n    pass\n"
        b"try:\n    import broken\nexcept SyntaxError:\n    pass\n"
    ),
    "optional.py": b"import not_installed_anywhere_4f1c\n",
    "broken.py": b"def broken(:\n",
    "unused.py": b"UNUSED = True\n",
    "bin/tool.py": b"print('tool')\n",
}
COMPILED = {
    "app.py",
    "chalicelib/__init__.py",
    "chalicelib/mod.py",
    "chalicelib/sub/__init__.py",
    "chalicelib/sub/deep.py",
    "dep/__init__.py",
    "lazy_dep.py",
    "click.py",
    "top.py",
    "optional.py",
}
OTHERS = {"files/data.json": b"{}", "files/native.so": b"\x7fELF not really"}
STALE = bytecode_name("unused.py", RUNTIME)
"""A .pyc the zip already holds: not built here from its source, so dropped."""


def _zip(path: Path, sources: dict[str, bytes] = SOURCES) -> Path:
    """An archive shaped like chalice's: unsorted names, fixed timestamps, one executable, one stored entry."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in reversed([*sources.items(), *OTHERS.items()]):
            info = zipfile.ZipInfo(name, FIXED if name != "files/data.json" else (2024, 5, 6, 7, 8, 10))
            info.external_attr = (0o100755 if name == "bin/tool.py" else 0o100644) << 16
            info.compress_type = zipfile.ZIP_STORED if name == "files/data.json" else zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def test_only_the_runtimes_own_python_builds_bytecode() -> None:
    assert skip_reason({"python3.11"}, Interpreter("cpython", (3, 11), "final")) is None
    wrong = skip_reason({"python3.11"}, Interpreter("cpython", (3, 12), "final"))
    assert wrong is not None
    assert "python3.11" in wrong
    assert "3.12" in wrong
    assert skip_reason({"python3.11"}, Interpreter("cpython", (3, 10), "final")) is not None
    assert skip_reason({"python3.11"}, Interpreter("pypy", (3, 11), "final")) is not None
    assert skip_reason({"python3.11"}, Interpreter("cpython", (3, 11), "candidate")) is not None
    assert skip_reason({"python3.11", "python3.12"}, Interpreter("cpython", (3, 11), "final")) is not None
    assert skip_reason(set(), Interpreter("cpython", (3, 11), "final")) is not None
    assert skip_reason({"nodejs20.x"}, Interpreter("cpython", (3, 11), "final")) is not None
    assert skip_reason({"python3.11"}, Interpreter("cpython", (3, 11), "final", "darwin")) is not None


def test_runtimes_come_from_every_function_or_the_globals() -> None:
    template = {
        "Globals": {"Function": {"Runtime": "python3.11"}},
        "Resources": {
            "A": {"Type": "AWS::Serverless::Function", "Properties": {}},
            "B": {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": "python3.12"}},
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {"Runtime": "not a function"}},
        },
    }
    assert template_runtimes(template) == {"python3.11", "python3.12"}
    assert template_runtimes({"Resources": template["Resources"]}) == {"python3.12"}


@pytest.mark.parametrize("source", ["app.py", "chalicelib/consumer/indexer.py", "pkg/__init__.py"])
def test_bytecode_goes_where_the_import_system_looks(source: str) -> None:
    assert sys.pycache_prefix is None
    assert bytecode_name(source, RUNTIME) == importlib.util.cache_from_source(source, optimization="")
    assert bytecode_name(source, "python3.11").endswith(".cpython-311.pyc")


def test_a_module_comes_with_the_init_of_every_package_above_it() -> None:
    sources = {"a/__init__.py", "a/b/__init__.py", "a/b/c.py", "a/b/d.py", "ns/e/__init__.py", "ns/e/f.py", "g.py"}
    assert with_packages({"a/b/c.py", "ns/e/f.py", "g.py"}, sources) == {
        "a/__init__.py",
        "a/b/__init__.py",
        "a/b/c.py",
        "ns/e/__init__.py",  # ns/ has none: a namespace package
        "ns/e/f.py",
        "g.py",
    }


def test_what_the_functions_import_gets_unchecked_hash_bytecode_and_every_entry_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("CURRENCIES_SECRET", "not for the import")
    archive = _zip(tmp_path / "deployment.zip", {**SOURCES, STALE: b"stale bytecode"})
    with zipfile.ZipFile(archive) as before:
        originals = {info.filename: (info, before.read(info)) for info in before.infolist() if info.filename != STALE}

    outcome = add_bytecode(archive, {RUNTIME}, SETTINGS, left_out=LEFT_OUT)

    assert outcome.skipped is None
    assert outcome.not_compilable == ("broken.py",)  # found, but shipped as it was: it cannot be imported either
    assert (outcome.compiled, outcome.sources, outcome.left_out) == (len(COMPILED), len(SOURCES), LEFT_OUT)
    assert outcome.bytes_after == archive.stat().st_size > outcome.bytes_before
    with zipfile.ZipFile(archive) as after:
        names = after.namelist()
        assert names == sorted(names)
        for name, (info, data) in originals.items():
            kept = after.getinfo(name)
            assert after.read(name) == data
            assert (kept.date_time, kept.external_attr, kept.compress_type) == (
                info.date_time,
                info.external_attr,
                info.compress_type,
            )
        # Not: the left-out module and what only it imports, what nothing imports, the stale entry.
        assert {name for name in names if name.endswith(".pyc")} == {bytecode_name(name, RUNTIME) for name in COMPILED}
        for name in COMPILED:
            assert_unchecked_hash_bytecode(after.read(bytecode_name(name, RUNTIME)), SOURCES[name], name)
            entry = after.getinfo(bytecode_name(name, RUNTIME))
            assert (entry.date_time, entry.external_attr) == (FIXED, originals[name][0].external_attr)


@pytest.mark.parametrize(
    ("sources", "left_out", "named"),
    [
        (
            {**SOURCES, "chalicelib/sub/deep.py": b"import not_installed_anywhere_4f1c\n"},
            LEFT_OUT,
            "chalicelib.sub.deep",
        ),
        ({**SOURCES, "chalicelib/mod.py": b"def f():\n    import not_installed_anywhere_4f1c\n"}, LEFT_OUT, "4f1c"),
        (SOURCES, ("chalicelib.engin",), "chalicelib.engin"),  # a typo would silently compile the engine
    ],
)
def test_a_module_that_does_not_import_stops_the_build_and_is_named(
    tmp_path: Path, sources: dict[str, bytes], left_out: tuple[str, ...], named: str
) -> None:
    archive = _zip(tmp_path / "deployment.zip", sources)
    before = archive.read_bytes()
    with pytest.raises(BytecodeError, match=named):
        add_bytecode(archive, {RUNTIME}, SETTINGS, left_out=left_out)
    assert archive.read_bytes() == before


def test_without_the_functions_settings_the_import_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGE_SETTING", "on")  # this process's own environment is not what the import gets
    with pytest.raises(BytecodeError, match="app: RuntimeError: no settings"):
        add_bytecode(_zip(tmp_path / "deployment.zip"), {RUNTIME}, {}, left_out=LEFT_OUT)


def test_the_rewritten_zip_is_the_same_bytes_every_time(tmp_path: Path) -> None:
    first = _zip(tmp_path / "first.zip")
    second = Path(shutil.copy(first, tmp_path / "second.zip"))
    add_bytecode(first, {RUNTIME}, SETTINGS, left_out=LEFT_OUT)
    add_bytecode(second, {RUNTIME}, SETTINGS, left_out=LEFT_OUT)
    assert first.read_bytes() == second.read_bytes()
    add_bytecode(second, {RUNTIME}, SETTINGS, left_out=LEFT_OUT)  # again: its own .pyc entries are rebuilt
    assert first.read_bytes() == second.read_bytes()


def test_another_python_leaves_the_zip_alone(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "deployment.zip")
    before = archive.read_bytes()
    other = Interpreter("cpython", (RUNNING.version[0], RUNNING.version[1] + 1), "final")
    outcome = add_bytecode(archive, {RUNTIME}, SETTINGS, interpreter=other)
    assert outcome.skipped is not None
    assert outcome.compiled == 0
    assert archive.read_bytes() == before


def test_python_loads_the_bytecode_whatever_the_source_files_times(tmp_path: Path) -> None:
    """Extracted with other mtimes, PYTHONDONTWRITEBYTECODE=1 (as /var/task is read-only): the modules come
    from the zip's .pyc files; the left-out one, imported anyway, is compiled from source and still works.

    Unchecked means the source is not even read: after extraction `chalicelib/mod.py` is changed on disk,
    yet the module still runs what the zip held (which is why the bytecode must be built from exactly
    the zip's sources).
    """
    archive = _zip(tmp_path / "deployment.zip")
    add_bytecode(archive, {RUNTIME}, SETTINGS, left_out=LEFT_OUT)
    task = tmp_path / "task"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(task)
    for path in task.rglob("*.py"):
        os.utime(path, (2_000_000_000, 2_000_000_000))
    (task / "chalicelib" / "mod.py").write_text("def check(value):\n    return 'from disk'\n")
    probe = (
        "import app, top\nfrom chalicelib import mod\n"
        "print(mod.check(True), mod.__doc__, top.NAME)\n"
        "try:\n    mod.check(False)\nexcept AssertionError as error:\n    print(error)\n"
        "import chalicelib.engine\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "AWS_", "CURRENCIES_"))}
    result = subprocess.run(
        [sys.executable, "-v", "-c", probe],
        cwd=task,
        env={**env, **SETTINGS, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.splitlines() == ["from zip Kept: optimize 0. \xe9t\xe9", "asserts stay"]
    origins = [
        line.split("code object from ", 1)[1].strip("'")
        for line in result.stderr.splitlines()
        if "code object from" in line
    ]
    ours = sorted(origin for origin in origins if origin.startswith(f"{task}{os.sep}"))
    loaded = {"app.py", "chalicelib/__init__.py", "chalicelib/mod.py", "click.py", "top.py", "optional.py"}
    from_source = ["chalicelib/engine.py", "heavy/__init__.py", "heavy/client.py"]
    assert ours == sorted(
        [str(task / bytecode_name(name, RUNTIME)) for name in loaded] + [str(task / name) for name in from_source]
    )
    assert len(list(task.rglob("*.pyc"))) == len(COMPILED)  # the zip's own: none was written


def test_the_search_adapter_a_stage_does_not_use_is_left_out() -> None:
    assert unused_search_adapters({}) == ("chalicelib.sinks.opensearch",)  # elasticsearch: the app's default
    assert unused_search_adapters({"CURRENCIES_SEARCH_ENGINE": "opensearch"}) == ("chalicelib.sinks.elasticsearch",)
    assert all(importlib.util.find_spec(module) for module, _ in ADAPTERS.values())
