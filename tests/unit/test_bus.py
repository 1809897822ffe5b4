"""Unit tests for chalicelib.stream.bus with fake SNS clients: batching within SNS's limits, retries, refusals."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.observability.metrics import REGISTRY
from chalicelib.stream.bus import SNS_BATCH_BYTES, Retry, publish, unwrap
from chalicelib.stream.changes import Change
from tests.unit.aws_fakes import LIMIT_BYTES, FakeSns, client_error, message_size

TOPIC = "arn:aws:sns:eu-west-1:123456789012:currency-changes"
FIFO_TOPIC = TOPIC + ".fifo"


class RecordingSns:
    """Records every publish_batch call and its arguments; every entry succeeds."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def publish_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"Successful": [{"Id": e["Id"]} for e in kwargs["PublishBatchRequestEntries"]], "Failed": []}


def change(number: int, kind: str = "MODIFY") -> Change:
    symbol = "A" + chr(ord("A") + number // 26) + chr(ord("A") + number % 26)
    return Change(
        type=kind,  # type: ignore[arg-type]
        data={"symbol": symbol} if kind == "REMOVE" else {"symbol": symbol, "rate": "1.5"},
        id=f"event-{number}",
        sequence=str(1000 + number),
        version=number,
        occurred_at="2024-05-01T12:00:00.000Z",
        published_at="2024-05-01T12:00:01.000Z",
        old=None,
        new=None,
    )


def test_changes_are_published_in_batches_of_ten() -> None:
    """SNS accepts at most 10 entries per publish_batch."""
    changes = [change(n) for n in range(23)]
    sns = RecordingSns()
    assert publish(sns, TOPIC, changes).calls == 3
    entries = [call["PublishBatchRequestEntries"] for call in sns.calls]
    assert [len(batch) for batch in entries] == [10, 10, 3]
    assert all(call["TopicArn"] == TOPIC for call in sns.calls)
    for batch in entries:
        ids = [entry["Id"] for entry in batch]
        assert len(set(ids)) == len(ids)  # SNS refuses a batch with repeated Ids
    published = [Change.from_json(entry["Message"]) for batch in entries for entry in batch]
    assert published == changes


@given(st.integers(0, 45))
def test_every_change_is_published_exactly_once(count: int) -> None:
    changes = [change(n) for n in range(count)]
    sns = RecordingSns()
    publication = publish(sns, TOPIC, changes)
    assert publication.calls == len(sns.calls) == -(-count // 10)
    assert publication.published == list(range(count))
    ids = [json.loads(e["Message"])["id"] for call in sns.calls for e in call["PublishBatchRequestEntries"]]
    assert ids == [c.id for c in changes]


def test_entries_carry_filterable_attributes() -> None:
    sns = RecordingSns()
    publish(sns, TOPIC, [change(0, kind="REMOVE")])
    (entry,) = sns.calls[0]["PublishBatchRequestEntries"]
    assert entry["MessageAttributes"] == {
        "type": {"DataType": "String", "StringValue": "REMOVE"},
        "symbol": {"DataType": "String", "StringValue": "AAA"},
    }
    assert "MessageGroupId" not in entry
    assert "MessageDeduplicationId" not in entry


def test_fifo_topic_groups_by_symbol_and_deduplicates_by_change_id() -> None:
    """Per-symbol order on a FIFO topic, and SNS drops a republished change."""
    sns = RecordingSns()
    publish(sns, FIFO_TOPIC, [change(0), change(1)])
    entries = sns.calls[0]["PublishBatchRequestEntries"]
    assert [(e["MessageGroupId"], e["MessageDeduplicationId"]) for e in entries] == [
        ("AAA", "event-0"),
        ("AAB", "event-1"),
    ]


def test_nothing_to_publish_makes_no_call() -> None:
    sns = RecordingSns()
    assert publish(sns, TOPIC, []).calls == 0
    assert sns.calls == []


def test_unwrap_takes_the_message_out_of_an_sns_envelope() -> None:
    text = change(0).to_json()
    body = json.dumps({"Type": "Notification", "MessageId": "1", "TopicArn": TOPIC, "Message": text})
    assert unwrap(body) == text


@pytest.mark.parametrize(
    "body",
    [
        change(0).to_json(),  # raw message delivery
        "not json",
        "",
        "[1, 2]",
        json.dumps({"Type": "SubscriptionConfirmation", "Message": "confirm"}),
        json.dumps({"Type": "Notification"}),
    ],
)
def test_unwrap_leaves_other_bodies_alone(body: str) -> None:
    assert unwrap(body) == body


def test_publish_batches_stay_within_the_sns_size_limit() -> None:
    """Ten 30 KB changes exceed 256 KiB together, so they go in two calls."""
    sns = RecordingSns()
    big = [change(n)._replace(new={"symbol": "EUR", "rate": "1", "note": "x" * 30_000}) for n in range(10)]
    publish(sns, TOPIC, big)
    sizes = [sum(len(e["Message"].encode()) for e in call["PublishBatchRequestEntries"]) for call in sns.calls]
    assert len(sizes) == 2
    assert all(size <= 256 * 1024 for size in sizes)


def padded(number: int, body_bytes: int, symbol: str = "EUR") -> Change:
    """A change whose message is `body_bytes` long (or as short as it can be) for the symbol given."""
    bare = change(number)._replace(data={"symbol": symbol, "rate": "1.5"}, new={"pad": ""})
    return bare._replace(new={"pad": "x" * max(0, body_bytes - len(bare.to_json()))})


def entry_size(c: Change) -> int:
    return message_size(
        c.to_json(),
        {
            "type": {"DataType": "String", "StringValue": c.type},
            "symbol": {"DataType": "String", "StringValue": c.symbol},
        },
    )


def no_wait(sleeps: list[float] | None = None, **overrides: Any) -> Retry:
    """Retries that record their pauses instead of sleeping, pausing the longest the backoff allows."""
    return Retry(sleep=(sleeps if sleeps is not None else []).append, jitter=lambda low, high: high, **overrides)


def published_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("currencies_sns_publishes_total", {"outcome": outcome}) or 0.0


def test_message_attributes_count_toward_the_256_kib_of_a_call() -> None:
    """Bodies that fit in one call only without their attributes go in two calls, as SNS counts both."""
    changes = [padded(n, (SNS_BATCH_BYTES - 100) // 10) for n in range(10)]
    assert sum(len(c.to_json().encode()) for c in changes) <= SNS_BATCH_BYTES < sum(map(entry_size, changes))
    sns = FakeSns()  # raises BatchRequestTooLong, as SNS does, for a call over 256 KiB
    publication = publish(sns, TOPIC, changes)
    assert publication.published == list(range(10))
    assert [len(call) for call in sns.calls] == [9, 1]


def test_a_change_too_large_with_its_attributes_is_refused_without_a_call() -> None:
    alone = padded(1, SNS_BATCH_BYTES - 10)
    assert len(alone.to_json().encode()) <= SNS_BATCH_BYTES < entry_size(alone)
    sns = FakeSns()
    publication = publish(sns, TOPIC, [change(0), alone, change(2)])
    assert publication.published == [0, 2]
    assert set(publication.refused) == {1}
    assert f"{entry_size(alone)} bytes" in publication.refused[1]
    assert sns.sent == 2


@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(250, 40_000), st.integers(LIMIT_BYTES - 3000, LIMIT_BYTES + 100)),
            st.integers(1, 3000),
        ),
        max_size=25,
    )
)
def test_every_change_is_published_once_or_refused_as_too_large(sizes: list[tuple[int, int]]) -> None:
    """Random body and attribute sizes near the limits: no call over 256 KiB, nothing lost or doubled."""
    changes = [padded(n, body, symbol="S" * symbol_length) for n, (body, symbol_length) in enumerate(sizes)]
    sns = FakeSns()
    publication = publish(sns, TOPIC, changes)
    too_large = {n for n, c in enumerate(changes) if entry_size(c) > LIMIT_BYTES}
    assert set(publication.refused) == too_large
    assert publication.published == [n for n in range(len(changes)) if n not in too_large]
    assert sns.published == [changes[n].id for n in publication.published]
    assert publication.unpublished == []


def test_a_call_that_raises_is_counted_as_failed_publishes_and_retried() -> None:
    failed_before, published_before = published_count("failed"), published_count("published")
    sns = FakeSns(call_errors=[client_error("Throttling", "slow down")])
    publication = publish(sns, TOPIC, [change(n) for n in range(3)], retry=no_wait())
    assert publication.published == [0, 1, 2]
    assert published_count("failed") - failed_before == 3
    assert published_count("published") - published_before == 3


def test_one_failed_entry_is_retried_alone() -> None:
    """25 changes, one entry failing once: 26 entries sent, not the whole batch again."""
    sleeps: list[float] = []
    sns = FakeSns(
        fail=lambda cid, attempt: ("InternalError", "try again", False) if cid == "event-13" and attempt == 1 else None
    )
    publication = publish(sns, TOPIC, [change(n) for n in range(25)], retry=no_wait(sleeps))
    assert [len(call) for call in sns.calls] == [10, 10, 1, 5]
    assert sns.sent == 26
    assert sorted(sns.published) == sorted(f"event-{n}" for n in range(25))
    assert sorted(publication.published) == list(range(25))
    assert sleeps == [0.1]


@pytest.mark.parametrize(
    ("code", "sender_fault", "retried"),
    [
        ("InvalidParameter", True, False),
        ("KMSDisabled", True, False),
        ("Throttled", True, True),
        ("KMSThrottling", True, True),
        ("InternalError", False, True),
    ],
)
def test_only_retryable_entry_failures_are_retried(code: str, sender_fault: bool, retried: bool) -> None:
    sns = FakeSns(fail=lambda cid, attempt: (code, "no", sender_fault) if cid == "event-1" and attempt == 1 else None)
    publication = publish(sns, TOPIC, [change(n) for n in range(3)], retry=no_wait())
    assert sns.attempts["event-1"] == (2 if retried else 1)
    if retried:
        assert sorted(publication.published) == [0, 1, 2]
    else:
        assert publication.published == [0, 2]
        assert publication.refused == {1: f"SNS refused the change: {code}: no"}


def test_a_failure_that_persists_stops_publishing_at_its_batch() -> None:
    """Bounded retries; then the failed change and every later batch are left for the caller to retry."""
    sleeps: list[float] = []
    sns = FakeSns(fail=lambda cid, attempt: ("InternalError", "down", False) if cid == "event-13" else None)
    publication = publish(sns, TOPIC, [change(n) for n in range(25)], retry=no_wait(sleeps))
    assert [len(call) for call in sns.calls] == [10, 10, 1, 1, 1]
    assert sleeps == [0.1, 0.2, 0.4]
    assert publication.unpublished == [13, *range(20, 25)]
    assert publication.published == [*range(13), *range(14, 20)]


@pytest.mark.parametrize(("now", "calls"), [(99.8, [10, 10]), (100.0, [])])
def test_retries_stay_within_the_deadline(now: float, calls: list[int]) -> None:
    """No pause that would leave no room for its call; no call at all once the deadline has passed."""
    sns = FakeSns(fail=lambda cid, attempt: ("InternalError", "down", False) if cid == "event-13" else None)
    retry = no_wait(clock=lambda: now)
    publication = publish(sns, TOPIC, [change(n) for n in range(25)], deadline=100.0, retry=retry)
    assert [len(call) for call in sns.calls] == calls
    assert publication.unpublished[0] == (13 if calls else 0)
