"""Unit tests for chalicelib.bus with a tiny fake SNS client that records publish_batch calls."""

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.bus import PublishError, publish, unwrap
from chalicelib.changes import Change

TOPIC = "arn:aws:sns:eu-west-1:123456789012:currency-changes"
FIFO_TOPIC = TOPIC + ".fifo"


class FakeSns:
    """Records every publish_batch call; answers with the queued responses, then with success."""

    def __init__(self, responses: list[dict[str, Any]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self._responses = list(responses or [])

    def publish_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self._responses:
            return self._responses.pop(0)
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
    sns = FakeSns()
    assert publish(sns, TOPIC, changes) == 3
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
    sns = FakeSns()
    calls = publish(sns, TOPIC, changes)
    assert calls == len(sns.calls) == -(-count // 10)
    ids = [json.loads(e["Message"])["id"] for call in sns.calls for e in call["PublishBatchRequestEntries"]]
    assert ids == [c.id for c in changes]


def test_entries_carry_filterable_attributes() -> None:
    sns = FakeSns()
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
    sns = FakeSns()
    publish(sns, FIFO_TOPIC, [change(0), change(1)])
    entries = sns.calls[0]["PublishBatchRequestEntries"]
    assert [(e["MessageGroupId"], e["MessageDeduplicationId"]) for e in entries] == [
        ("AAA", "event-0"),
        ("AAB", "event-1"),
    ]


def test_failed_entries_raise_so_the_stream_batch_is_retried() -> None:
    failed = {"Successful": [], "Failed": [{"Id": "3", "Code": "InternalError", "Message": "try again"}]}
    sns = FakeSns([{"Successful": [], "Failed": []}, failed])
    with pytest.raises(PublishError, match="InternalError"):
        publish(sns, TOPIC, [change(n) for n in range(15)])
    assert len(sns.calls) == 2


def test_nothing_to_publish_makes_no_call() -> None:
    sns = FakeSns()
    assert publish(sns, TOPIC, []) == 0
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
    sns = FakeSns()
    big = [replace(change(n), new={"symbol": "EUR", "rate": "1", "note": "x" * 30_000}) for n in range(10)]
    publish(sns, TOPIC, big)
    sizes = [sum(len(e["Message"].encode()) for e in call["PublishBatchRequestEntries"]) for call in sns.calls]
    assert len(sizes) == 2
    assert all(size <= 256 * 1024 for size in sizes)
