"""The footprint benchmark's pure parts: reading `-X importtime`, the batch it feeds, the fake engine's answers."""

from __future__ import annotations

import json
import threading
import urllib.request

from bench.footprint import (
    HANDLERS,
    FakeEngine,
    _FakeEngineHandler,
    consumer_batch_event,
    invocation_imports,
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
