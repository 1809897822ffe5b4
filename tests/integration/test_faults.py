"""Fault tests on real services: the promise holds when parts of the pipeline fail.

Each test ends with a reconciliation: the current-state index equals the table, and every
symbol's history in the events index is exactly the writes made, in version order.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.currency import CurrencyRate
from chalicelib.store import RateStore
from currencies_local.pipeline import LocalPipeline
from tests.integration.conftest import ENGINE_PROCESSES
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually

OUTAGE_S = 20
CHANGES = 2000


def reconcile(pipeline: LocalPipeline, search: EngineUnderTest, symbols: list[str], writes: int) -> None:
    """The table and both indices agree, after every change made it through."""
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    indexed = eventually(lambda: search.count_events_for(symbols), lambda n: n >= writes, 180)
    assert indexed == writes, f"{indexed} events indexed for {writes} writes"
    table = {rate.symbol: rate.rate for rate in store.list() if rate.symbol in symbols}
    assert search.current_rates(symbols) == table
    for symbol in symbols:
        versions = [e["currency"]["version"] for e in search.events_for([symbol])]
        assert versions == sorted(versions), f"{symbol}'s history is not in version order"
        assert len(set(versions)) == len(versions), f"{symbol}'s history has a repeated version"


def test_the_engine_frozen_for_20_s_in_the_middle_of_2000_changes(
    pipeline: LocalPipeline, search: EngineUnderTest
) -> None:
    node = ENGINE_PROCESSES.get(search.name)
    if node is None:
        pytest.skip(f"{search.name} was given by URL: this test must own the node it freezes")
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    symbols = [f"F{a}{b}" for a in "ABCD" for b in "ABCDE"]
    rng = random.Random(11)
    writes = 0
    frozen_at = None
    try:
        while writes < CHANGES:
            if writes == CHANGES // 2 and frozen_at is None:
                os.killpg(node.pid, signal.SIGSTOP)  # hung, not gone: requests time out
                frozen_at = time.monotonic()
            if frozen_at is not None and time.monotonic() - frozen_at > OUTAGE_S:
                os.killpg(node.pid, signal.SIGCONT)
                frozen_at = -1.0
            symbol = rng.choice(symbols)
            if rng.random() < 0.1:
                writes += store.delete(symbol) is not None
            else:
                store.put(CurrencyRate(symbol, Decimal(rng.randint(1, 10**6)).scaleb(-3)))
                writes += 1
        if frozen_at is not None and frozen_at >= 0:
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - frozen_at)))
    finally:
        os.killpg(node.pid, signal.SIGCONT)
    reconcile(pipeline, search, symbols, writes)


def test_the_consumer_dies_half_way_through_its_bulk_writes(
    pipeline: LocalPipeline, search: EngineUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first few bulk requests write half their documents, then the invocation crashes."""
    import app  # noqa: PLC0415 - the pipeline's own consumer, as the Lambda builds it

    engine = app.clients.sink().search_engine
    real_send = engine.send_bulk
    crashes = {"left": 3}

    def send_half_then_crash(body: bytes, timeout_s: float) -> list[dict[str, Any]]:
        if crashes["left"] == 0:
            return real_send(body, timeout_s)
        crashes["left"] -= 1
        lines = body.splitlines(keepends=True)
        actions = _action_line_indices(lines)
        half = actions[len(actions) // 2] if len(actions) > 1 else len(lines)
        real_send(b"".join(lines[:half]), timeout_s)
        raise RuntimeError("the consumer died half-way through its batch")

    monkeypatch.setattr(engine, "send_bulk", send_half_then_crash)
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    symbols = [f"K{a}{b}" for a in "ABC" for b in "ABCD"]
    rng = random.Random(5)
    for _ in range(120):
        store.put(CurrencyRate(rng.choice(symbols), Decimal(rng.randint(1, 10**6)).scaleb(-3)))
    reconcile(pipeline, search, symbols, 120)
    assert crashes["left"] == 0, "the crash was never injected"


def _action_line_indices(lines: list[bytes]) -> list[int]:
    """Where each bulk action starts: a metadata line (a delete has no document line after it)."""
    starts, position = [], 0
    while position < len(lines):
        starts.append(position)
        meta = json.loads(lines[position])
        position += 1 if "delete" in meta else 2
    return starts


def test_sns_refuses_some_entries_then_everything_for_a_while(
    pipeline: LocalPipeline, search: EngineUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every third entry fails (retryable) for a while, then every call is throttled for 8 s."""
    import app  # noqa: PLC0415 - the pipeline's own stream handler client, as the Lambda builds it

    sns = app.clients.sns()
    real_publish_batch = sns.publish_batch
    started = time.monotonic()
    calls = {"partial": 0, "throttled": 0}

    def flaky_publish_batch(**request: Any) -> dict[str, Any]:
        elapsed = time.monotonic() - started
        if elapsed < 4:
            entries = request["PublishBatchRequestEntries"]
            keep = [e for n, e in enumerate(entries) if n % 3 != 2]
            refused = [e for n, e in enumerate(entries) if n % 3 == 2]
            response = real_publish_batch(**{**request, "PublishBatchRequestEntries": keep}) if keep else {}
            calls["partial"] += bool(refused)
            failed = [
                {"Id": e["Id"], "Code": "InternalError", "Message": "try again", "SenderFault": False} for e in refused
            ]
            return {**response, "Failed": [*response.get("Failed", []), *failed]}
        if elapsed < 12:
            calls["throttled"] += 1
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "PublishBatch")
        return real_publish_batch(**request)

    monkeypatch.setattr(sns, "publish_batch", flaky_publish_batch)
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    symbols = [f"N{a}{b}" for a in "ABC" for b in "ABCD"]
    rng = random.Random(3)
    writes = 0
    while time.monotonic() - started < 10:  # writes before, during and after both faults
        store.put(CurrencyRate(rng.choice(symbols), Decimal(rng.randint(1, 10**6)).scaleb(-3)))
        writes += 1
        time.sleep(0.05)
    reconcile(pipeline, search, symbols, writes)
    assert calls["partial"] > 0
    assert calls["throttled"] > 0
