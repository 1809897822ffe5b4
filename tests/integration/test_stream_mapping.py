"""The local stream poller on moto's real stream: a record the handler keeps failing on is isolated by
bisection and given up with a description on the on-failure queue, and every record behind it is handled."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import boto3

from chalicelib.api.currency import CurrencyRate
from chalicelib.api.store import RateStore
from currencies_local.event_sources import StreamPoller
from currencies_local.moto import REGION
from currencies_local.pipeline import LocalPipeline
from currencies_ops.deploy.stack import StreamMappingSettings
from tests.integration.support import eventually

SYMBOLS = ["SMA", "SMB", "SMC", "SBD", "SME", "SMF", "SMG"]
POISON = "SBD"


def test_a_failing_record_is_given_up_alone_and_nothing_behind_it_is_held_back(pipeline: LocalPipeline) -> None:
    assert pipeline.resources is not None
    sqs = boto3.client("sqs")
    failures_url = sqs.create_queue(QueueName=f"stream-failures-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    for symbol in SYMBOLS:
        store.put(CurrencyRate(symbol, Decimal("1.5")))
    handled: list[str] = []

    def handler(event: dict[str, Any], _context: Any) -> None:
        symbols = [record["dynamodb"]["Keys"]["symbol"]["S"] for record in event["Records"]]
        if POISON in symbols:
            raise RuntimeError("a record this handler cannot take")
        handled.extend(symbols)

    poller = StreamPoller(
        boto3.client("dynamodbstreams"),
        pipeline.resources.stream_arn,
        handler,
        region=REGION,
        on_failure=lambda description: sqs.send_message(QueueUrl=failures_url, MessageBody=json.dumps(description)),
        config=StreamMappingSettings(maximum_retry_attempts=1),
    )
    poller.start()
    try:
        eventually(lambda: set(handled), lambda seen: seen >= set(SYMBOLS) - {POISON}, 60)

        def descriptions() -> list[dict[str, Any]]:
            return [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=failures_url).get("Messages", [])]

        [description] = eventually(descriptions, bool, 60)
    finally:
        poller.stop()
        poller.join(10)
    assert set(handled) >= set(SYMBOLS) - {POISON}
    assert POISON not in handled
    info = description["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert description["requestContext"]["condition"] == "RetryAttemptsExhausted"
    records = boto3.client("dynamodbstreams").get_records(
        ShardIterator=boto3.client("dynamodbstreams").get_shard_iterator(
            StreamArn=pipeline.resources.stream_arn,
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=info["startSequenceNumber"],
        )["ShardIterator"],
        Limit=1,
    )["Records"]
    assert records[0]["dynamodb"]["Keys"]["symbol"]["S"] == POISON  # the description points at the record
