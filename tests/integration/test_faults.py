"""Fault tests on real services: the promise holds when parts of the pipeline fail.

Each test ends with a reconciliation: the current-state index equals the table, and every
symbol's history in the events index is exactly the writes made, in version order.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.api.currency import CurrencyRate
from chalicelib.api.store import RateStore
from chalicelib.observability.metrics import REGISTRY
from chalicelib.stream.bus import unwrap
from currencies_local.pipeline import LocalPipeline
from currencies_ops.console import Quiet
from currencies_ops.letters import MOVED_REASON, HeldLetters, Letter
from tests.integration.conftest import ENGINE_PROCESSES
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually, random_write

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
            writes += random_write(store, symbols, rng)
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
    """Where each bulk action starts: every action is a metadata line and a document line."""
    return list(range(0, len(lines), 2))


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


def test_eight_writers_race_creates_updates_and_deletes_on_three_symbols(
    pipeline: LocalPipeline, search: EngineUnderTest
) -> None:
    """400 operations from 8 threads at once, through the whole pipeline: the indices agree with the table."""
    assert pipeline.resources is not None
    table_name = pipeline.resources.table_name
    symbols = ["WRA", "WRB", "WRC"]
    rng = random.Random(8)
    plans = [
        [(rng.choice(symbols), rng.random() < 0.3, Decimal(rng.randint(1, 10**6)).scaleb(-3)) for _ in range(50)]
        for _ in range(8)
    ]
    writes: list[int] = []
    errors: list[BaseException] = []

    def write(plan: list[tuple[str, bool, Decimal]]) -> None:
        # A session and store per writer, as separate Lambda containers have (boto3 resources are not thread-safe).
        store = RateStore(boto3.session.Session().resource("dynamodb").Table(table_name))
        try:
            for symbol, delete, rate in plan:
                if delete:
                    writes.append(store.delete(symbol) is not None)  # deleting a missing symbol writes nothing
                else:
                    store.put(CurrencyRate(symbol, rate))
                    writes.append(True)
        except BaseException as error:
            errors.append(error)
            raise

    threads = [threading.Thread(target=write, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(writes) == 400
    assert sum(writes) > 300
    reconcile(pipeline, search, symbols, sum(writes))
    removals = [e for e in search.events_for(symbols) if e["event"]["action"] == "remove"]
    assert len(removals) > len(symbols), "no symbol was deleted and re-created"


def test_every_message_delivered_two_or_three_times_shuffled(
    pipeline: LocalPipeline, search: EngineUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SNS takes every change but delivers nothing at first; then each is delivered 2 or 3 times, in random order."""
    import app  # noqa: PLC0415 - the pipeline's own stream handler client, as the Lambda builds it

    sns = app.clients.sns()
    real_publish_batch = sns.publish_batch
    held: list[dict[str, Any]] = []

    def hold(**request: Any) -> dict[str, Any]:
        entries = request["PublishBatchRequestEntries"]
        held.extend(entries)
        return {"Successful": [{"Id": e["Id"], "MessageId": uuid.uuid4().hex} for e in entries], "Failed": []}

    monkeypatch.setattr(sns, "publish_batch", hold)
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    symbols = [f"D{a}{b}" for a in "ABC" for b in "ABCD"]
    rng = random.Random(23)
    writes = 0
    for _ in range(150):
        writes += random_write(store, symbols, rng, delete_share=0.15)
    eventually(lambda: len(held), lambda n: n >= writes, 60)
    monkeypatch.setattr(sns, "publish_batch", real_publish_batch)
    assert len(held) == writes

    deliveries = [entry for entry in held for _ in range(rng.randint(2, 3))]
    rng.shuffle(deliveries)
    duplicates_before = _consumed("duplicate")
    for start in range(0, len(deliveries), 10):
        batch = [{**entry, "Id": str(n)} for n, entry in enumerate(deliveries[start : start + 10])]
        response = real_publish_batch(TopicArn=pipeline.resources.topic_arn, PublishBatchRequestEntries=batch)
        assert not response.get("Failed")
    reconcile(pipeline, search, symbols, writes)
    extra = len(deliveries) - writes
    assert eventually(lambda: _consumed("duplicate") - duplicates_before, lambda n: n >= extra, 60) == extra


def _consumed(outcome: str) -> float:
    return REGISTRY.get_sample_value("currencies_consumer_messages_total", {"outcome": outcome}) or 0.0


def _streamed(outcome: str) -> float:
    return sum(
        REGISTRY.get_sample_value("currencies_stream_records_total", {"event_type": kind, "outcome": outcome}) or 0.0
        for kind in ("INSERT", "MODIFY", "REMOVE")
    )


def _dead_letters(dlq_url: str, wanted: Callable[[Letter], bool], count: int) -> list[Letter]:
    """The DLQ's letters that `wanted` picks, once `count` of them are there; every letter stays in the queue
    (read as `currencies redrive` reads it: held hidden while read, then shown again; other tests share it)."""
    held = HeldLetters(boto3.client("sqs"), dlq_url, hide_s=120)

    def read() -> list[Letter]:
        try:
            return [letter for letter in held.receive(10_000, Quiet())[0] if wanted(letter)]
        finally:
            held.release()

    return eventually(read, lambda found: len(found) >= count, 90)


def _symbol(letter: Letter) -> str | None:
    return (letter.identifiers.get("keys") or {}).get("symbol", {}).get("S")


def test_poison_records_and_messages_end_in_the_dlq_with_reasons_and_the_rest_is_indexed(
    pipeline: LocalPipeline, search: EngineUnderTest
) -> None:
    """Foreign items mixed into a shard of good writes, poison messages into the consumer's batches."""
    assert pipeline.resources is not None
    resources = pipeline.resources
    table = boto3.resource("dynamodb").Table(resources.table_name)
    store = RateStore(table)
    good = [f"P{a}{b}" for a in "AB" for b in "ABCDE"]
    foreign = {
        "PXA": {"note": "foreign"},  # no rate
        "PXB": {"rate": "not a number"},
        "PXC": {"rate": {"amount": Decimal(1), "unit": "EUR"}},  # nested attributes
        "PXD": {"rate": Decimal("1.5"), "revision": 1, "created_at": 1, "blob": "x" * 300_000},  # a 300 KB item
    }
    now = "2026-11-27T00:00:00.000Z"
    valid = {
        **{"schema": "currencies.change.v1", "type": "INSERT", "data": {"symbol": "PMX", "rate": "1"}, "id": "x"},
        **{"sequence": "1", "version": 1, "occurred_at": now, "published_at": now, "old": None, "new": None},
    }
    poison_messages = {
        "not JSON": "this is {not json",
        "wrong schema version": json.dumps({**valid, "schema": "currencies.change.v9", "id": uuid.uuid4().hex}),
        "unknown type": json.dumps({**valid, "type": "UPSERT", "id": uuid.uuid4().hex}),
        "missing fields": json.dumps({"schema": "currencies.change.v1", "type": "INSERT", "id": uuid.uuid4().hex}),
        "oversized": json.dumps({**valid, "id": uuid.uuid4().hex, "data": {"symbol": "PMY", "rate": "9" * 200_000}}),
    }
    dead_lettered_before = _streamed("dead_lettered")
    sns = boto3.client("sns")
    rng = random.Random(31)
    poisons = [*foreign.items(), *poison_messages.items()]
    writes = 0
    for n in range(60):
        store.put(CurrencyRate(rng.choice(good), Decimal(rng.randint(1, 10**6)).scaleb(-3)))
        writes += 1
        if n % 6 == 3 and poisons:
            name, poison = poisons.pop(0)
            if isinstance(poison, dict):
                table.put_item(Item={"symbol": name, **poison})
            else:
                sns.publish(TopicArn=resources.topic_arn, Message=poison)
    reconcile(pipeline, search, good, writes)

    stream_letters = _dead_letters(
        resources.dlq_url,
        lambda letter: letter.source == "stream" and _symbol(letter) in foreign,
        len(foreign),
    )
    by_symbol = {_symbol(letter): letter for letter in stream_letters}
    assert set(by_symbol) == set(foreign)
    assert "rate" in by_symbol["PXA"].reason
    assert "rate" in by_symbol["PXB"].reason
    assert "rate" in by_symbol["PXC"].reason
    assert by_symbol["PXD"].payload is None  # too large for SQS: its keys and sequence say where it is
    assert by_symbol["PXD"].identifiers["size"] > 300_000
    assert "bytes" in by_symbol["PXD"].reason
    assert _streamed("dead_lettered") - dead_lettered_before >= len(foreign)

    texts = set(poison_messages.values())
    consumer_letters = _dead_letters(
        resources.dlq_url,
        lambda letter: letter.source == "consumer" and unwrap(letter.payload or "") in texts,
        len(texts),
    )
    reasons = {unwrap(letter.payload or ""): letter.reason for letter in consumer_letters}
    assert set(reasons) == texts
    for name, text in poison_messages.items():
        assert reasons[text], f"the {name} message has no reason"
    assert "schema" in reasons[poison_messages["wrong schema version"]]
    assert "UPSERT" in reasons[poison_messages["unknown type"]]
    assert "currency.rate" in reasons[poison_messages["oversized"]]
    assert search.rates_for(["PMX", "PMY", *foreign]) == {}


def test_the_dlq_refuses_letters_and_nothing_blocks_or_vanishes(
    pipeline: LocalPipeline, search: EngineUnderTest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The dead-letter queue refuses every letter for a while (a KMS key revoked, a policy change):
    a foreign stream record is logged whole and counted; a poison message is retried until SQS's
    own redrive policy moves it there; good writes on the same shard are all indexed."""
    import app  # noqa: PLC0415 - the handlers' SQS client, as the Lambdas build it

    assert pipeline.resources is not None
    resources = pipeline.resources
    sqs = app.clients.sqs()
    real_send = sqs.send_message

    def refuse_letters(**request: Any) -> dict[str, Any]:
        if request["QueueUrl"] == resources.dlq_url:
            raise ClientError({"Error": {"Code": "KmsAccessDenied", "Message": "key disabled"}}, "SendMessage")
        return real_send(**request)

    monkeypatch.setattr(sqs, "send_message", refuse_letters)
    caplog.set_level(logging.ERROR, logger="chalicelib")
    failed_before = _streamed("dead_letter_failed")
    table = boto3.resource("dynamodb").Table(resources.table_name)
    store = RateStore(table)
    good = ["RLA", "RLB", "RLC"]
    poison = json.dumps({"schema": "currencies.change.v1", "type": "INSERT", "id": uuid.uuid4().hex})
    for n in range(30):
        store.put(CurrencyRate(good[n % 3], Decimal(n + 1)))
        if n == 10:
            table.put_item(Item={"symbol": "RLX", "note": "written by another tool"})
            boto3.client("sns").publish(TopicArn=resources.topic_arn, Message=poison)
    reconcile(pipeline, search, good, 30)
    assert eventually(lambda: _streamed("dead_letter_failed") - failed_before, lambda n: n >= 1, 30) == 1
    [line] = [r for r in caplog.records if "neither published nor dead-lettered" in r.getMessage()]
    assert "written by another tool" in line.__dict__["record"]  # the whole record, kept in the log

    # The consumer cannot dead-letter the poison: it fails it, and after the queue's
    # maxReceiveCount SQS moves it to the DLQ itself (as the raw envelope, without our reason).
    [moved] = _dead_letters(
        resources.dlq_url, lambda letter: letter.reason == MOVED_REASON and unwrap(letter.payload or "") == poison, 1
    )
    assert json.loads(moved.payload or "")["Type"] == "Notification"
    assert any("dead-lettering failed" in r.getMessage() for r in caplog.records)
