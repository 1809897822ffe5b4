"""At-least-once delivery through the real bus: moto SNS -> SQS -> queue poller -> consumer -> Elasticsearch.

Changes are published straight to the topic, the way a redelivering or reordering
network would hand them to the consumer.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import boto3
import pytest

from chalicelib.observability.metrics import REGISTRY
from chalicelib.stream.bus import publish, unwrap
from chalicelib.stream.changes import Change, iso_utc
from currencies_local.pipeline import LocalPipeline
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually


def change(symbol: str, kind: str, version: int, rate: str | None = None) -> Change:
    now = iso_utc(datetime.now(UTC))
    image = None if rate is None else {"symbol": symbol, "rate": rate}
    return Change(
        type=kind,  # type: ignore[arg-type]
        data={"symbol": symbol} if rate is None else {"symbol": symbol, "rate": rate},
        id=uuid.uuid4().hex,
        sequence=str(version),
        version=version,
        occurred_at=now,
        published_at=now,
        old={"symbol": symbol, "rate": "1"} if kind == "REMOVE" else None,
        new=image,
    )


@pytest.fixture(scope="module")
def send(pipeline: LocalPipeline):
    sns = boto3.client("sns")
    assert pipeline.resources is not None
    return lambda *changes: publish(sns, pipeline.resources.topic_arn, list(changes))


def consumed(outcome: str) -> float:
    return REGISTRY.get_sample_value("currencies_consumer_messages_total", {"outcome": outcome}) or 0.0


def test_redelivered_change_is_indexed_once(send, search: EngineUnderTest) -> None:
    duplicates_before = consumed("duplicate")
    first = change("CAD", "INSERT", 10, "1.35")
    send(first, first, first)
    eventually(lambda: consumed("duplicate"), lambda n: n >= duplicates_before + 2)
    assert [e["event"]["id"] for e in search.events_for(["CAD"])] == [first.id]
    assert search.rates_for(["CAD"]) == {"CAD": "1.35"}


def test_an_older_change_never_overwrites_a_newer_one(send, search: EngineUnderTest) -> None:
    stale_before = consumed("stale")
    send(change("AUD", "MODIFY", 20, "1.52"))
    eventually(lambda: search.rates_for(["AUD"]), lambda rates: rates == {"AUD": "1.52"})
    send(change("AUD", "INSERT", 19, "1.49"))
    eventually(lambda: consumed("stale"), lambda n: n >= stale_before + 1)
    assert search.rates_for(["AUD"]) == {"AUD": "1.52"}
    assert len(search.events_for(["AUD"])) == 2  # history keeps both


def test_a_late_write_cannot_resurrect_a_deleted_symbol(send, search: EngineUnderTest) -> None:
    send(change("NZD", "INSERT", 30, "1.65"))
    eventually(lambda: search.rates_for(["NZD"]), lambda rates: rates == {"NZD": "1.65"})
    send(change("NZD", "REMOVE", 32))
    eventually(lambda: search.rates_for(["NZD"]), lambda rates: rates == {})
    stale_before = consumed("stale")
    send(change("NZD", "MODIFY", 31, "1.70"))
    eventually(lambda: consumed("stale"), lambda n: n >= stale_before + 1)
    assert search.rates_for(["NZD"]) == {}


def test_poison_message_goes_to_the_dead_letter_queue_with_its_reason(
    pipeline: LocalPipeline, send, search: EngineUnderTest
) -> None:
    assert pipeline.resources is not None
    sqs = boto3.client("sqs")
    poison = '{"type": "INSERT", "data": {}}'
    boto3.client("sns").publish(TopicArn=pipeline.resources.topic_arn, Message=poison)
    send(change("SEK", "INSERT", 40, "10.9"))  # the queue keeps flowing behind it
    eventually(lambda: search.rates_for(["SEK"]), lambda rates: rates == {"SEK": "10.9"})

    def dead_letters() -> list[dict]:
        received = sqs.receive_message(
            QueueUrl=pipeline.resources.dlq_url, MessageAttributeNames=["All"], MaxNumberOfMessages=10
        ).get("Messages", [])
        return [letter for letter in received if unwrap(json.loads(letter["Body"])["payload"] or "") == poison]

    letters = eventually(dead_letters, bool)
    assert len(letters) == 1
    attributes = letters[0]["MessageAttributes"]
    assert attributes["source"]["StringValue"] == "consumer"
    assert "schema" in attributes["reason"]["StringValue"]
    # One letter format for every source; the payload is the body as received (SNS envelope
    # and all), so it can be redriven.
    letter = json.loads(letters[0]["Body"])
    assert letter["source"] == "consumer"
    assert "schema" in letter["reason"]
    assert unwrap(letter["payload"]) == poison
