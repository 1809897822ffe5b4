"""Replaying every change three times, shuffled, changes nothing: 1,000 events stay 1,000, rates equal the table."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import boto3

from chalicelib.api.store import RateStore
from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.stream.changes import Change, change_from_record
from currencies_local.lambda_events import dynamodb_event
from currencies_local.moto import REGION
from currencies_local.pipeline import LocalPipeline
from currencies_local.synthetic import random_table
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually, random_write

CHANGES = 1000
SYMBOLS = [f"Q{a}{b}" for a in "ABCD" for b in "ABCDEFGHIJ"]  # 40 symbols no other test uses


def replay(changes: list[Change], sink, events_index: str, rates_index: str, seed: int) -> None:
    deliveries = changes * 3
    random.Random(seed).shuffle(deliveries)
    for start in range(0, len(deliveries), 10):
        batch = [InboundMessage(str(start + i), c.to_json()) for i, c in enumerate(deliveries[start : start + 10])]
        report = consume(batch, sink, events_index=events_index, rates_index=rates_index)
        assert report.failed_ids == [], report.outcomes


def stream_changes(pipeline: LocalPipeline) -> list[Change]:
    """The change messages of this test's symbols' stream records, made as the relay makes them."""
    assert pipeline.resources is not None
    streams = boto3.client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=pipeline.resources.stream_arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=pipeline.resources.stream_arn,
        ShardId=shard["ShardId"],
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    records: list[dict] = []
    while True:
        response = streams.get_records(ShardIterator=iterator, Limit=1000)
        records += response["Records"]
        iterator = response["NextShardIterator"]
        if not response["Records"]:
            break
    event = dynamodb_event(records, pipeline.resources.stream_arn, REGION)
    now = datetime.now(UTC)
    return [change_from_record(r, now) for r in event["Records"] if r["dynamodb"]["Keys"]["symbol"]["S"] in SYMBOLS]


def test_pipeline_changes_replayed_three_times_shuffled(pipeline: LocalPipeline, search: EngineUnderTest) -> None:
    """1,000 real writes through moto's table and the running pipeline, then a triple replay."""
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    rng = random.Random(7)
    writes = 0
    while writes < CHANGES:
        writes += random_write(store, SYMBOLS, rng)

    def indexed() -> int:
        return search.count_events_for(SYMBOLS)

    assert eventually(indexed, lambda n: n >= CHANGES, timeout_s=120) == CHANGES
    changes = stream_changes(pipeline)
    assert len(changes) == CHANGES

    import app  # noqa: PLC0415 - the pipeline's own consumer sink, as the Lambda builds it

    replay(changes, app.clients.sink(), "currency-events", "currency-rates", seed=1)
    assert indexed() == CHANGES
    table = {rate.symbol: rate.rate for rate in store.list() if rate.symbol in SYMBOLS}
    assert search.current_rates(SYMBOLS) == table


def test_synthetic_changes_replayed_three_times_shuffled(engine: EngineUnderTest) -> None:
    symbols = [f"Z{engine.name[:2]}{n}" for n in range(40)]
    table = random_table(CHANGES, symbols, seed=3)
    changes = table.changes()
    replay(changes, engine.sink, engine.events_index, engine.rates_index, seed=2)
    assert engine.count_events_for(symbols) == CHANGES
    assert engine.current_rates(symbols) == table.rates()
