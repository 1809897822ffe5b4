"""The stream handler core (relay) with a recording fake SNS client: publish, dead-letter, report."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.observability.metrics import REGISTRY
from chalicelib.stream import UnconvertibleRecord, relay
from currencies_local.synthetic import TableModel

TOPIC = "arn:aws:sns:us-east-1:123456789012:currency-topic"


class FakeSns:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.messages += [json.loads(entry["Message"]) for entry in kwargs["PublishBatchRequestEntries"]]
        return {"Failed": []}


def records(writes: int) -> list[dict[str, Any]]:
    table = TableModel()
    for n in range(writes):
        table.put("EUR", Decimal(n + 1))
    return table.records


def test_every_record_is_published_in_order() -> None:
    sns = FakeSns()
    counts = relay(records(12), sns=sns, topic_arn=TOPIC)
    assert counts == {"published": 12}
    assert [m["data"]["rate"] for m in sns.messages] == [str(n + 1) for n in range(12)]


def test_an_unconvertible_record_is_dead_lettered_and_the_rest_published() -> None:
    sns, dead = FakeSns(), []
    broken = {"eventID": "x", "eventName": "INSERT", "dynamodb": {"SequenceNumber": "1"}}
    counts = relay([broken, *records(2)], sns=sns, topic_arn=TOPIC, dead_letter=lambda b, r: dead.append((b, r)))
    assert counts == {"published": 2, "dead_lettered": 1}
    ((body, reason),) = dead
    assert json.loads(body)["eventID"] == "x"
    assert "malformed stream record" in reason


def test_without_a_dead_letter_queue_an_unconvertible_record_fails_the_batch() -> None:
    sns = FakeSns()
    with pytest.raises(UnconvertibleRecord):
        relay([{"eventID": "x", "eventName": "INSERT", "dynamodb": {}}], sns=sns, topic_arn=TOPIC)
    assert sns.messages == []


def test_a_write_that_did_not_bump_the_revision_is_published_and_reported() -> None:
    """A console edit that kept `revision`: the history gets it, and it is counted as unordered."""
    (record,) = records(1)
    modify = json.loads(json.dumps(record))
    modify["eventName"] = "MODIFY"
    modify["eventID"] = "console-edit"
    modify["dynamodb"]["OldImage"] = record["dynamodb"]["NewImage"]
    modify["dynamodb"]["NewImage"] = {**record["dynamodb"]["NewImage"], "rate": {"N": "9"}}
    before = REGISTRY.get_sample_value(
        "currencies_stream_records_total", {"event_type": "MODIFY", "outcome": "unordered"}
    )
    sns = FakeSns()
    relay([modify], sns=sns, topic_arn=TOPIC)
    after = REGISTRY.get_sample_value(
        "currencies_stream_records_total", {"event_type": "MODIFY", "outcome": "unordered"}
    )
    assert [m["id"] for m in sns.messages] == ["console-edit"]
    assert (after or 0) - (before or 0) == 1
