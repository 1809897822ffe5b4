"""Unit tests for chalicelib.consumer.indexer.consume with a hand-written fake sink (no engine, no queue)."""

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.consumer.documents import Action
from chalicelib.consumer.indexer import InboundMessage, consume, deadline_of
from chalicelib.sinks.base import ItemResult
from chalicelib.stream.changes import Change

EVENTS = "currencies-events"
RATES = "currencies-rates"
NOW = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)


class FakeSink:
    """Answers each bulk request with `respond(actions)` and records what it was sent."""

    engine = "fake"

    def __init__(self, respond: Callable[[Sequence[Action]], list[ItemResult]] | None = None) -> None:
        self._respond = respond or (lambda actions: [ItemResult(201) for _ in actions])
        self.requests: list[list[Action]] = []

    def ensure_indices(self, deadline: float | None = None) -> None:
        pass

    def write(self, actions: Sequence[Action], deadline: float | None = None) -> list[ItemResult]:
        self.requests.append(list(actions))
        return self._respond(actions)


class BrokenSink(FakeSink):
    def write(self, actions: Sequence[Action], deadline: float | None = None) -> list[ItemResult]:
        self.requests.append(list(actions))
        raise ConnectionError("engine unreachable")


def by_target(statuses: dict[tuple[str, str], int]) -> Callable[[Sequence[Action]], list[ItemResult]]:
    """Status per (index, _id); anything not listed is written."""
    return lambda actions: [ItemResult(statuses.get((a.index, a.id), 201)) for a in actions]


def change(change_id: str, kind: str = "MODIFY", symbol: str = "EUR") -> Change:
    image = {"symbol": symbol, "rate": "1.5", "revision": 2, "created_at": 1_700_000_000_000}
    return Change(
        type=kind,  # type: ignore[arg-type]
        data={"symbol": symbol} if kind == "REMOVE" else {"symbol": symbol, "rate": "1.5"},
        id=change_id,
        sequence="100",
        version=1_700_000_000_000_000_002,
        occurred_at="2024-05-01T12:00:00.000Z",
        published_at="2024-05-01T12:00:01.000Z",
        old=None if kind == "INSERT" else image,
        new=None if kind == "REMOVE" else image,
    )


def envelope(text: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:x", "Message": text})


def message(message_id: str, body: str) -> InboundMessage:
    return InboundMessage(message_id, body)


def run(messages: list[InboundMessage], sink: FakeSink, **kwargs: Any) -> Any:
    return consume(messages, sink, events_index=EVENTS, rates_index=RATES, clock=lambda: NOW, **kwargs)


def test_enveloped_and_raw_messages_are_both_indexed() -> None:
    """SQS subscriptions deliver the SNS envelope; raw delivery and direct SNS triggers do not."""
    sink = FakeSink()
    report = run([message("m1", envelope(change("c1").to_json())), message("m2", change("c2").to_json())], sink)
    assert report.failed_ids == []
    assert report.outcomes == {"indexed": 2}
    assert report.batch_item_failures() == {"batchItemFailures": []}
    (request,) = sink.requests
    assert [(a.operation, a.index, a.id) for a in request] == [
        ("create", EVENTS, "c1"),
        ("index", RATES, "EUR"),
        ("create", EVENTS, "c2"),
        ("index", RATES, "EUR"),
    ]
    assert request[0].document is not None
    assert request[0].document["event"]["ingested"] == "2024-05-01T12:00:05.000Z"


def test_redelivered_change_is_a_duplicate_not_a_failure() -> None:
    sink = FakeSink(by_target({(EVENTS, "c1"): 409, (RATES, "EUR"): 409}))
    report = run([message("m1", change("c1").to_json())], sink)
    assert report.failed_ids == []
    assert report.outcomes == {"duplicate": 1}


def test_older_change_is_stale_not_a_failure() -> None:
    sink = FakeSink(by_target({(RATES, "EUR"): 409}))
    report = run([message("m1", change("c1").to_json())], sink)
    assert report.failed_ids == []
    assert report.outcomes == {"stale": 1}


def test_a_rejected_event_document_fails_only_its_message() -> None:
    sink = FakeSink(by_target({(EVENTS, "c2"): 400}))
    messages = [
        message("m1", change("c1", symbol="EUR").to_json()),
        message("m2", change("c2", symbol="USD").to_json()),
        message("m3", change("c3", symbol="GBP").to_json()),
    ]
    report = run(messages, sink)
    assert report.batch_item_failures() == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert report.outcomes == {"indexed": 2, "failed": 1}


def test_retryable_rate_write_fails_its_message() -> None:
    sink = FakeSink(by_target({(RATES, "USD"): 429}))
    messages = [
        message("m1", change("c1", symbol="EUR").to_json()),
        message("m2", change("c2", symbol="USD").to_json()),
    ]
    assert run(messages, sink).failed_ids == ["m2"]


def test_unreachable_sink_fails_every_parsed_message() -> None:
    dead: list[tuple[str, str]] = []
    messages = [
        message("m1", change("c1").to_json()),
        message("bad", "not json"),
        message("m2", envelope(change("c2").to_json())),
    ]
    report = run(messages, BrokenSink(), dead_letter=lambda body, reason: dead.append((body, reason)))
    assert report.failed_ids == ["m1", "m2"]
    assert report.outcomes == {"failed": 2, "dead_lettered": 1}
    assert [body for body, _ in dead] == ["not json"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "JSON"),
        (envelope("{truncated"), "JSON"),
        (json.dumps({**json.loads(change("c1").to_json()), "schema": "currencies.change.v0"}), "schema"),
        (json.dumps({"Type": "Notification", "Message": "[1, 2]"}), "object"),
    ],
)
def test_unparseable_message_is_dead_lettered_with_its_reason(body: str, problem: str) -> None:
    """No retry can fix it, so it must neither block the batch nor vanish."""
    dead: list[tuple[str, str]] = []
    sink = FakeSink()
    report = run(
        [message("bad", body), message("m1", change("c1").to_json())],
        sink,
        dead_letter=lambda b, r: dead.append((b, r)),
    )
    assert report.failed_ids == []
    assert report.outcomes == {"dead_lettered": 1, "indexed": 1}
    ((sent_body, reason),) = dead
    assert sent_body == body  # the original body, envelope included, so it can be inspected and replayed
    assert problem in reason
    assert [a.id for a in sink.requests[0]] == ["c1", "EUR"]


def test_unparseable_message_without_dead_letter_queue_is_failed() -> None:
    report = run([message("bad", "not json"), message("m1", change("c1").to_json())], FakeSink())
    assert report.failed_ids == ["bad"]
    assert report.outcomes == {"failed": 1, "indexed": 1}


def test_failing_dead_letter_callback_fails_the_message() -> None:
    def refuse(body: str, reason: str) -> None:
        raise TimeoutError("dead-letter queue unreachable")

    report = run([message("bad", "not json")], FakeSink(), dead_letter=refuse)
    assert report.failed_ids == ["bad"]
    assert report.outcomes == {"failed": 1}


def test_empty_batch() -> None:
    report = run([], FakeSink())
    assert report.failed_ids == []
    assert sum(report.outcomes.values()) == 0


STATUSES = [200, 201, 400, 404, 409, 429, 500, 503]


@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.sampled_from(STATUSES)), max_size=12))
def test_failed_messages_are_exactly_those_with_an_unexpected_item_error(pairs: list[tuple[int, int]]) -> None:
    """Per message: the events create may conflict (duplicate), the versioned rate index may conflict (stale)."""
    statuses: dict[tuple[str, str], int] = {}
    messages = []
    for number, (event_status, rate_status) in enumerate(pairs):
        symbol = "A" + chr(ord("A") + number // 26) + chr(ord("A") + number % 26)
        statuses[(EVENTS, f"c{number}")] = event_status
        statuses[(RATES, symbol)] = rate_status
        messages.append(message(f"m{number}", change(f"c{number}", symbol=symbol).to_json()))
    report = run(messages, FakeSink(by_target(statuses)))

    acceptable = {200, 201, 409}
    expected_failed = [f"m{n}" for n, (e, r) in enumerate(pairs) if e not in acceptable or r not in acceptable]
    assert report.failed_ids == expected_failed
    assert sum(report.outcomes.values()) == len(pairs)
    assert report.outcomes["failed"] == len(expected_failed)
    ok = [(e, r) for e, r in pairs if e in acceptable and r in acceptable]
    assert report.outcomes["duplicate"] == sum(1 for e, _ in ok if e == 409)
    assert report.outcomes["stale"] == sum(1 for e, r in ok if e != 409 and r == 409)


# --- malformed messages that pass the schema check must not take the batch down --------

VALID = json.loads(change("c1").to_json())


def test_envelope_with_non_string_message_is_dead_lettered() -> None:
    body = json.dumps({"Type": "Notification", "Message": VALID})
    dead: list[tuple[str, str]] = []
    report = run([message("bad", body)], FakeSink(), dead_letter=lambda b, r: dead.append((b, r)))
    assert report.outcomes == {"dead_lettered": 1}


@pytest.mark.parametrize(
    "fault",
    [
        {"old": 5},
        {"new": 5},
        {"sequence": 100},
        {"occurred_at": "yesterday"},
        {"data": {"symbol": "EUR", "rate": "abc"}},
    ],
    ids=["old-int", "new-int", "sequence-int", "occurred-at-text", "rate-not-numeric"],
)
def test_wrongly_typed_fields_fail_only_their_message(fault: dict[str, Any]) -> None:
    messages = [message("bad", json.dumps({**VALID, **fault})), message("m2", change("c2", symbol="USD").to_json())]
    report = run(messages, FakeSink())
    assert report.failed_ids in ([], ["bad"])
    assert report.outcomes["indexed"] >= 1


def rejecting(actions: Sequence[Action]) -> list[ItemResult]:
    return [ItemResult(400, "mapper_parsing_exception", "failed to parse [currency.rate]") for _ in actions]


@pytest.mark.parametrize(
    ("receive_count", "outcome"), [(1, "failed"), (4, "failed"), (5, "dead_lettered"), (9, "dead_lettered")]
)
def test_a_failing_message_is_dead_lettered_with_its_reason_on_its_last_receive(
    receive_count: int, outcome: str
) -> None:
    dead: list[tuple[str, str]] = []
    body = change("c1").to_json()
    report = consume(
        [InboundMessage("m1", body, receive_count)],
        FakeSink(rejecting),
        events_index=EVENTS,
        rates_index=RATES,
        dead_letter=lambda b, r: dead.append((b, r)),
        max_receives=5,
    )
    assert report.outcomes == {outcome: 1}
    assert report.failed_ids == ([] if outcome == "dead_lettered" else ["m1"])
    if outcome == "dead_lettered":
        assert dead == [(body, dead[0][1])]
        assert "mapper_parsing_exception" in dead[0][1]
        assert "failed to parse [currency.rate]" in dead[0][1]


def test_without_a_redrive_limit_failures_are_always_retried() -> None:
    report = consume(
        [InboundMessage("m1", change("c1").to_json(), 50)],
        FakeSink(rejecting),
        events_index=EVENTS,
        rates_index=RATES,
        dead_letter=lambda b, r: None,
    )
    assert report.failed_ids == ["m1"]


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, json.dumps({**VALID, "occurred_at": "2026-11-26T20:41:05"})],
    ids=["nested-too-deeply", "timestamp-without-offset"],
)
def test_hostile_bodies_are_dead_lettered_not_raised(body: str) -> None:
    dead: list[tuple[str, str]] = []
    report = run([message("bad", body), message("good", change("c2").to_json())], FakeSink(),
                 dead_letter=lambda b, r: dead.append((b, r)))  # fmt: skip
    assert report.outcomes == {"dead_lettered": 1, "indexed": 1}
    assert [b for b, _ in dead] == [body]


@pytest.mark.parametrize(("remaining_ms", "budget_s"), [(60_000, 57.0), (3_000, 2.4), (500, 0.4)])
def test_the_deadline_leaves_time_to_report(remaining_ms: int, budget_s: float) -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return remaining_ms

    before = time.monotonic()
    deadline = deadline_of(Context())
    assert deadline is not None
    assert abs((deadline - before) - budget_s) < 0.05


def test_no_context_no_deadline() -> None:
    assert deadline_of(object()) is None
