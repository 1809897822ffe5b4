"""The footprint benchmark's pure parts: reading `-X importtime` and `-v`, the batch it feeds, the fake engine's
answers, the read-only package tree."""

from __future__ import annotations

import json
import os
import threading
import urllib.request
import zipfile
from pathlib import Path

from bench.footprint import (
    HANDLERS,
    FakeEngine,
    _FakeEngineHandler,
    code_sources,
    consumer_batch_event,
    invocation_imports,
    unpack,
)
from chalicelib.consumer.sqs_batch import inbound_messages
from chalicelib.stream.bus import unwrap
from chalicelib.stream.changes import Change

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       500 |        500 | encodings
import time:       300 |        300 |   chalice.app
import time:       100 |        400 | chalice
import time:      2000 |     150000 | app
import time:      1000 |       1000 |   botocore.session
import time:      4000 |      90000 | boto3
import time:       700 |      20000 | chalicelib.sinks.elasticsearch
"""


def test_first_invocation_imports_are_the_top_level_imports_after_app() -> None:
    app_ms, total_ms, later = invocation_imports(IMPORTTIME)
    assert app_ms == 150.0
    assert total_ms == 150.0 + 90.0 + 20.0
    assert [module.module for module in later] == ["boto3", "chalicelib.sinks.elasticsearch"]


def test_every_deployed_function_has_a_first_invocation() -> None:
    assert set(HANDLERS) == {"api_handler", "relay_changes", "index_changes", "tidy_metrics"}
    assert all(code.startswith("clients.") for code in HANDLERS.values())


def test_the_consumer_batch_is_sqs_shaped_with_changes_in_sns_envelopes() -> None:
    event = consumer_batch_event(50)
    messages = inbound_messages(event["Records"])
    assert len(messages) == 50
    assert len({message.message_id for message in messages}) == 50
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs"
        Change.from_json(unwrap(record["body"]))


def test_fake_engine_answers_each_bulk_item_and_counts_them() -> None:
    engine = FakeEngine(("127.0.0.1", 0), _FakeEngineHandler)
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    try:
        lines = [
            {"create": {"_index": "e", "_id": "1"}},
            {"doc": 1},
            {"index": {"_index": "r", "_id": "A", "version": 3, "version_type": "external"}},
            {"doc": 2},
            {"delete": {"_index": "r", "_id": "B"}},
        ]
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        url = f"http://127.0.0.1:{engine.server_address[1]}/_bulk"
        request = urllib.request.Request(url, data=body, method="PUT")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["X-Elastic-Product"] == "Elasticsearch"
            answer = json.load(response)
    finally:
        engine.shutdown()
        engine.server_close()
    assert answer["errors"] is False
    assert [next(iter(item)) for item in answer["items"]] == ["create", "index", "delete"]
    assert [item[next(iter(item))]["status"] for item in answer["items"]] == [201, 200, 200]
    assert (engine.items, engine.bulk_requests) == (3, 1)


def test_code_sources_counts_the_package_modules_loaded_from_bytecode_and_from_source(tmp_path: Path) -> None:
    task = tmp_path / "task"
    verbose = "\n".join(
        [
            "# code object from '/usr/lib/python3.11/__pycache__/json.cpython-311.pyc'",  # not the package's
            f"# {task}/__pycache__/app.cpython-311.pyc matches {task}/app.py",
            f"# code object from '{task}/__pycache__/app.cpython-311.pyc'",
            f"# code object from '{task}/pkg/__pycache__/a.cpython-311.pyc'",
            f"# code object from {task}/pkg/b.py",
            f"# code object from {tmp_path}/task2/c.py",  # a sibling directory with the same prefix
            "import 'app' # <_frozen_importlib_external.SourceFileLoader object at 0x7f>",
        ]
    )
    assert code_sources(verbose, task) == {"bytecode": 2, "source": 1}


def test_unpack_makes_a_read_only_tree_with_or_without_the_bytecode(tmp_path: Path) -> None:
    archive = tmp_path / "deployment.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("app.py", "")
        opened.writestr("pkg/__pycache__/a.cpython-311.pyc", b"")
        opened.writestr("pkg/a.py", "")
    with_bytecode = unpack(archive, tmp_path / "lambda", bytecode=True)
    sources = unpack(archive, tmp_path / "sources", bytecode=False)
    assert sorted(p.relative_to(with_bytecode).as_posix() for p in with_bytecode.rglob("*.py*")) == [
        "app.py",
        "pkg/__pycache__/a.cpython-311.pyc",
        "pkg/a.py",
    ]
    assert sorted(p.relative_to(sources).as_posix() for p in sources.rglob("*.py*")) == ["app.py", "pkg/a.py"]
    for path in [with_bytecode, *with_bytecode.rglob("*")]:
        assert not path.stat().st_mode & 0o222, path
    for path in [with_bytecode, *with_bytecode.rglob("*"), sources, *sources.rglob("*")]:
        os.chmod(path, 0o755)  # so pytest can remove them as any user
