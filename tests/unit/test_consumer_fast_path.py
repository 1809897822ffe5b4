"""The consumer's fast path (issue 10) changes how, not what: the same JSON, outcomes and metrics as before."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from chalicelib.consumer.documents import Action, actions_for
from chalicelib.consumer.indexer import InboundMessage, consume, parse_change
from chalicelib.observability import metrics
from chalicelib.observability.metrics import LAG_BUCKETS, observe_all
from chalicelib.sinks.base import ItemResult
from chalicelib.sinks.bulk import BulkWriter, encode, parse_item
from chalicelib.stream.bus import change_payload
from chalicelib.stream.changes import Change, InvalidChange

EVENTS, RATES = "events", "rates"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def old_encode(action: Action) -> bytes:
    """What the bulk body was before orjson: two `json.dumps` lines."""
    meta: dict[str, Any] = {"_index": action.index, "_id": action.id}
    if action.version is not None:
        meta |= {"version": action.version, "version_type": "external"}
    document = json.dumps(action.document, separators=(",", ":"))
    return (json.dumps({action.operation: meta}, separators=(",", ":")) + "\n" + document + "\n").encode()


@given(
    st.sampled_from(["create", "index"]),
    st.text(min_size=1),
    st.dictionaries(st.text(), json_values, max_size=6),
    st.none() | st.integers(0, 2**63 - 1),
)
def test_bulk_lines_are_the_json_that_json_dumps_would_send(
    operation: str, doc_id: str, document: dict[str, Any], version: int | None
) -> None:
    action = Action(operation, "idx", doc_id, document, version)  # type: ignore[arg-type]
    new, old = encode(action), old_encode(action)
    assert new.endswith(b"\n")
    assert new.count(b"\n") == 2  # one meta line, one document line: NDJSON
    assert [json.loads(line) for line in new.splitlines()] == [json.loads(line) for line in old.splitlines()]


def test_what_orjson_refuses_is_still_encoded() -> None:
    """A lone surrogate (possible in a replayed document) or a non-str key: `json` writes them, as before."""
    for document in ({"text": "\ud800"}, {1: "one"}):
        action = Action("create", "idx", "a", document)
        assert encode(action) == old_encode(action)


def test_the_engine_gets_the_pre_serialised_lines_as_one_body() -> None:
    class Engine:
        name = "recording"

        def __init__(self) -> None:
            self.bodies: list[bytes] = []

        def send_bulk(self, body: bytes, timeout_s: float) -> list[dict[str, Any]]:
            self.bodies.append(body)
            return [{"index": {"status": 201}} for _ in range(body.count(b"\n") // 2)]

    engine = Engine()
    actions = [Action("index", "idx", f"id-{n}", {"n": n, "é": "ü"}, version=n) for n in range(5)]
    assert BulkWriter(engine).write(actions) == [ItemResult(201)] * 5  # type: ignore[arg-type]
    (body,) = engine.bodies
    old = b"".join(old_encode(action) for action in actions)
    assert [json.loads(line) for line in body.splitlines()] == [json.loads(line) for line in old.splitlines()]
    assert "é".encode() in body  # UTF-8 as is, not \u escapes: the same JSON, fewer bytes


def test_plain_results_are_shared_and_errors_are_not() -> None:
    assert parse_item({"create": {"status": 201}}) is parse_item({"index": {"status": 201}})
    assert parse_item({"create": {"status": 409, "error": {"type": "t", "reason": "r"}}}) == ItemResult(409, "t", "r")


# --- parsing: one orjson pass per text, the same verdicts as Change.from_json --------------------------

CHANGE = Change(
    type="MODIFY",
    data={"symbol": "EUR", "rate": "1.5"},
    id="c1",
    sequence="100",
    version=7,
    occurred_at="2024-05-01T12:00:00.000Z",
    published_at="2024-05-01T12:00:01.000Z",
    old={"symbol": "EUR", "rate": "1.4"},
    new={"symbol": "EUR", "rate": "1.5", "revision": 3},
)


def envelope(text: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "m", "Message": text})


@pytest.mark.parametrize("wrap", [envelope, lambda text: text], ids=["sns-envelope", "raw"])
def test_parse_change_equals_from_json(wrap: Any) -> None:
    assert parse_change(wrap(CHANGE.to_json())) == Change.from_json(CHANGE.to_json()) == CHANGE


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        json.dumps({**json.loads(CHANGE.to_json()), "schema": "other"}),
        json.dumps({k: v for k, v in json.loads(CHANGE.to_json()).items() if k != "version"}),
        json.dumps({**json.loads(CHANGE.to_json()), "version": -1}),
        json.dumps({**json.loads(CHANGE.to_json()), "occurred_at": "2024-05-01T12:00:00"}),
        "[" * 5000,
    ],
    ids=["not-json", "not-object", "schema", "missing-field", "bad-version", "naive-time", "deep"],
)
def test_invalid_changes_are_refused_as_from_json_refuses_them(text: str) -> None:
    with pytest.raises((InvalidChange, RecursionError)):
        Change.from_json(text)
    for body in (text, envelope(text)):
        with pytest.raises(InvalidChange):
            parse_change(body)


def test_a_raw_change_is_parsed_once_and_an_envelope_twice() -> None:
    assert change_payload(CHANGE.to_json()) == json.loads(CHANGE.to_json())
    assert change_payload(envelope(CHANGE.to_json())) == json.loads(CHANGE.to_json())
    not_notification = json.dumps({"Type": "Other", "Message": CHANGE.to_json()})
    assert change_payload(not_notification) == json.loads(not_notification)


# --- metrics once per batch: the same totals as per item -------------------------------------------------


@given(st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), max_size=60))
def test_observe_all_equals_observe_each(amounts: list[float]) -> None:
    registry = CollectorRegistry()
    each = Histogram("each", "h", buckets=LAG_BUCKETS, registry=registry)
    batch = Histogram("batch", "h", buckets=LAG_BUCKETS, registry=registry)
    for amount in amounts:
        each.observe(amount)
    observe_all(batch, amounts)
    buckets = {s.labels["le"]: s.value for s in each.collect()[0].samples if s.name.endswith("_bucket")}
    assert buckets == {s.labels["le"]: s.value for s in batch.collect()[0].samples if s.name.endswith("_bucket")}
    assert math.isclose(registry.get_sample_value("batch_sum") or 0.0, registry.get_sample_value("each_sum") or 0.0)


def test_observe_all_refuses_an_unlabelled_parent() -> None:
    with pytest.raises(ValueError, match="missing label values"):
        observe_all(metrics.STAGE_LAG, [1.0])


def change_with(number: int, symbol: str, kind: str = "MODIFY") -> Change:
    image = {"symbol": symbol, "rate": f"1.{number}"}
    return Change(
        type=kind,  # type: ignore[arg-type]
        data={"symbol": symbol} if kind == "REMOVE" else {"symbol": symbol, "rate": f"1.{number}"},
        id=f"c{number}",
        sequence=str(number),
        version=number,
        occurred_at="2024-05-01T12:00:00.000Z",
        published_at="2024-05-01T12:00:01.000Z",
        old=image,
        new=None if kind == "REMOVE" else image,
    )


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class ScriptedSink:
    engine = "scripted"

    def __init__(self, statuses: Sequence[int]) -> None:
        self._statuses = statuses

    def ensure_indices(self, deadline: float | None = None) -> None:
        pass

    def write(self, actions: Sequence[Action], deadline: float | None = None) -> list[ItemResult]:
        return [ItemResult(status) for status in self._statuses]


@given(st.lists(st.tuples(st.sampled_from([201, 409, 429, 400]), st.sampled_from([201, 409, 429])), max_size=20))
def test_outcome_metrics_per_batch_add_up_to_the_report(pairs: list[tuple[int, int]]) -> None:
    changes = [change_with(n, f"S{n % 3}", "REMOVE" if n % 4 == 3 else "MODIFY") for n in range(len(pairs))]
    messages = [InboundMessage(f"m{n}", change.to_json()) for n, change in enumerate(changes)]
    outcomes = ("indexed", "duplicate", "stale", "failed", "dead_lettered")
    before = {outcome: sample("currencies_consumer_messages_total", outcome=outcome) for outcome in outcomes}
    lag_before = sample("currencies_end_to_end_lag_seconds_count")
    sink = ScriptedSink([status for pair in pairs for status in pair])
    report = consume(messages, sink, events_index=EVENTS, rates_index=RATES)
    after = {outcome: sample("currencies_consumer_messages_total", outcome=outcome) for outcome in outcomes}
    assert {o: after[o] - before[o] for o in outcomes} == {o: report.outcomes.get(o, 0) for o in outcomes}
    assert sum(report.outcomes.values()) == len(messages)
    # A lag per change whose event was written (201) and whose rate did not fail (not 429).
    written = sum(1 for event, rate in pairs if event == 201 and rate != 429)
    assert sample("currencies_end_to_end_lag_seconds_count") - lag_before == written


def test_the_rate_gauge_ends_at_the_last_rate_written_per_symbol() -> None:
    changes = [change_with(1, "GAUGE1"), change_with(2, "GAUGE1"), change_with(3, "GAUGE1"), change_with(4, "GAUGE2")]
    changes.append(change_with(5, "GAUGE2", "REMOVE"))
    messages = [InboundMessage(f"m{n}", change.to_json()) for n, change in enumerate(changes)]
    # c3's rate is stale (an older version than the stored one): the gauge keeps c2's rate.
    sink = ScriptedSink([201, 201, 201, 201, 201, 409, 201, 201, 201, 201])
    consume(messages, sink, events_index=EVENTS, rates_index=RATES)
    assert sample("currencies_currency_rate", symbol="GAUGE1") == pytest.approx(1.2)
    assert metrics.REGISTRY.get_sample_value("currencies_currency_rate", {"symbol": "GAUGE2"}) is None


def test_actions_are_immutable_named_tuples() -> None:
    (event, rate) = actions_for(CHANGE, events_index=EVENTS, rates_index=RATES, ingested_at="now")
    assert (rate.operation, rate.id, rate.version) == ("index", "EUR", 7)
    with pytest.raises(AttributeError):
        event.id = "other"  # type: ignore[misc]
