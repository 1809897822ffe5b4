"""`currencies backfill` on a 10,000-item table that existed before the pipeline, while live writes flow.

Each test works on a table and indices of its own (the pipeline's are shared with other tests):
the items are loaded first, then a consumer is attached to the table's stream (the production
`consume`, fed the changes `change_from_record` makes of the stream records) and writers go on
changing some symbols through `RateStore`, as the API does, while the backfill runs. Afterwards
`verify` must find nothing but the items no reader can use.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from chalicelib.api.store import RateStore
from chalicelib.config import Settings
from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.sinks.sink import SearchSink
from chalicelib.stream.changes import change_from_record
from currencies_local.cli import main
from currencies_local.lambda_events import dynamodb_event
from currencies_local.moto import REGION, aws_environment
from currencies_local.pipeline import LocalPipeline
from currencies_ops.backfill import backfill
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target
from currencies_ops.verify import Quiet, verify
from tests.integration.engines import EngineUnderTest
from tests.integration.support import random_write

ITEMS = 10_000
UNREADABLE = 5
LIVE_SYMBOLS = [f"BF{n:05d}" for n in range(50, ITEMS, 97)]  # ~100 readable loaded symbols keep changing


@dataclass
class OldTable:
    """A table loaded before any pipeline saw it, and the deployment (settings) that names it."""

    name: str
    environment: dict[str, str]
    unreadable: list[str]
    versionless: int
    """Readable items without a version: each run gives them a newer fallback version."""

    def target(self) -> Target:
        aws = {name: value for name, value in self.environment.items() if name.startswith("AWS_")}
        return Target(Settings.from_env(self.environment), "test", aws)


def load(pipeline: LocalPipeline, engine: EngineUnderTest) -> OldTable:
    """ITEMS items straight into a new table: most as the API writes them, some without a version
    (another writer), some tombstones, a few unreadable; then the stream is read to its end."""
    suffix = uuid.uuid4().hex[:8]
    name = f"backfill-{suffix}"
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    rng = random.Random(suffix)
    unreadable, versionless = [], 0
    with boto3.resource("dynamodb").Table(name).batch_writer() as batch:
        for n in range(ITEMS):
            symbol = f"BF{n:05d}"
            item: dict[str, Any] = {"symbol": symbol, "rate": Decimal(rng.randint(1, 10**7)).scaleb(-4)}
            if n % 10 != 3:  # written by the API: a version; a tenth without (another writer)
                stamp = 1_700_000_000_000 + n
                item |= {"revision": rng.randint(1, 9), "created_at": stamp, "updated_at": stamp}
            if n % 50 == 7:
                item = {name: value for name, value in item.items() if name != "rate"} | {"deleted": True}
            if n < UNREADABLE:
                item["rate"] = "not a number"
                unreadable.append(symbol)
            elif "created_at" not in item:
                versionless += 1
            batch.put_item(Item=item)
    environment = {
        **aws_environment(pipeline.moto_url),
        **pipeline.environment,
        "CURRENCIES_TABLE": name,
        "CURRENCIES_RATES_INDEX": f"bf-{suffix}-rates",
        "CURRENCIES_EVENTS_INDEX": f"bf-{suffix}-events",
        "CURRENCIES_SEARCH_URL": engine.url,
    }
    environment.pop("CURRENCIES_PUSHGATEWAY_URL", None)
    return OldTable(name, environment, unreadable, versionless)


class LiveTraffic:
    """Writers changing LIVE_SYMBOLS through RateStore, and a consumer indexing the table's stream."""

    def __init__(self, table: OldTable) -> None:
        settings = table.target().settings
        self._settings = settings
        self._sink = SearchSink(table.target().search, settings.events_index, settings.rates_index)
        self._store = RateStore(boto3.resource("dynamodb").Table(table.name))
        streams = boto3.client("dynamodbstreams")
        arn = boto3.client("dynamodb").describe_table(TableName=table.name)["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._streams, self._arn = streams, arn
        self._iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while self._records():  # the load's records: the pipeline was attached after them
            pass
        self.writes = 0
        self._writing = threading.Event()
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._consume, daemon=True),
        ]

    def _records(self) -> list[dict[str, Any]]:
        response = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
        self._iterator = response["NextShardIterator"]
        return response["Records"]

    def __enter__(self) -> LiveTraffic:
        self._writing.set()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._writing.clear()
        self._threads[0].join()
        self._stopped.set()  # the consumer drains the stream, then stops
        self._threads[1].join(timeout=120)
        assert not self._threads[1].is_alive(), "the consumer did not drain the stream"

    def _write(self) -> None:
        rng = random.Random(1)
        while self._writing.is_set():
            self.writes += random_write(self._store, LIVE_SYMBOLS, rng, delete_share=0.2)

    def _consume(self) -> None:
        while True:
            records = self._records()
            if not records:
                if self._stopped.is_set():
                    return
                time.sleep(0.05)
                continue
            event = dynamodb_event(records, self._arn, REGION)
            now = datetime.now(UTC)
            messages = [
                InboundMessage(str(n), change_from_record(record, now).to_json())
                for n, record in enumerate(event["Records"])
            ]
            report = consume(
                messages,
                self._sink,
                events_index=self._settings.events_index,
                rates_index=self._settings.rates_index,
            )
            assert not report.failed_ids, report.outcomes


class StopAfter(Quiet):
    """A progress sink that asks the backfill to stop once `items` items are done, as Ctrl-C does."""

    def __init__(self, stop: threading.Event, items: int) -> None:
        self._stop, self._left = stop, items

    def advance(self, amount: int) -> None:
        self._left -= amount
        if self._left <= 0:
            self._stop.set()


@pytest.fixture
def old_table(pipeline: LocalPipeline, search: EngineUnderTest) -> Iterator[OldTable]:
    table = load(pipeline, search)
    yield table
    boto3.client("dynamodb").delete_table(TableName=table.name)
    for index in (table.environment["CURRENCIES_RATES_INDEX"], table.environment["CURRENCIES_EVENTS_INDEX"]):
        search.client.indices.delete(index=index)
        search.client.indices.delete_index_template(name=f"{index}-template")


def differences(table: OldTable) -> dict[str, int]:
    report = verify(table.target(), OperationMetrics("verify", None), max_differences=ITEMS)
    return {kind: count for kind, count in report.counts.items() if count}


def test_interrupted_backfill_resumes_during_live_writes_and_leaves_verify_clean(
    old_table: OldTable, tmp_path: Path
) -> None:
    target = old_table.target()
    checkpoint = tmp_path / "checkpoint.json"
    stop = threading.Event()
    with LiveTraffic(old_table) as traffic:
        first = backfill(
            target,
            OperationMetrics("backfill", None),
            segments=4,
            checkpoint_path=checkpoint,
            progress=StopAfter(stop, 3000),
            stop=stop,
            page_size=250,
        )
        assert first.interrupted
        assert not first.complete
        assert 3000 <= first.scanned < ITEMS
        assert checkpoint.exists()
        saved = json.loads(checkpoint.read_text())
        assert saved["segments"] == 4
        assert len(saved["done"]) < 4

        second = backfill(target, OperationMetrics("backfill", None), checkpoint_path=checkpoint, page_size=250)
    assert traffic.writes > 50, "live writes went on during the backfill"
    assert second.resumed
    assert second.complete
    assert not second.interrupted
    assert second.segments == 4  # the checkpoint's
    assert not checkpoint.exists()
    # Together the two runs saw every item once (a page is never redone when it was checkpointed).
    assert first.scanned + second.scanned == ITEMS
    assert first.skipped + second.skipped == UNREADABLE
    assert first.failed + second.failed == 0
    assert {symbol for symbol, _ in first.skipped_items + second.skipped_items} == set(old_table.unreadable)
    assert differences(old_table) == {"unreadable": UNREADABLE}


def test_backfill_command_on_a_table_nobody_indexed_then_again_changes_nothing(
    old_table: OldTable, tmp_path: Path
) -> None:
    """The whole table through the command line, uninterrupted (the throughput measured here)."""
    args = ["backfill", "--json", "--segments", "4", "--checkpoint", str(tmp_path / "checkpoint.json")]
    started = time.monotonic()
    result = CliRunner().invoke(main, args, env=old_table.environment)
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["complete"]
    assert not report["resumed"]
    written = ITEMS - UNREADABLE
    assert report["items"] == {"scanned": ITEMS, "written": written, "current": 0, "skipped": UNREADABLE, "failed": 0}
    assert report["events_written"] == ITEMS - UNREADABLE
    print(f"\nbackfill throughput: {ITEMS} items in {seconds:.2f} s = {ITEMS / seconds:.0f} items/s")
    assert differences(old_table) == {"unreadable": UNREADABLE}

    # Again: versioned items are already current; the others get a newer fallback version (same
    # content); no event is added, since the newest of each symbol already says the same.
    again = json.loads(CliRunner().invoke(main, args, env=old_table.environment).output)
    assert again["items"]["written"] == old_table.versionless
    assert again["items"]["current"] == ITEMS - UNREADABLE - old_table.versionless
    assert again["events_written"] == 0
    assert differences(old_table) == {"unreadable": UNREADABLE}
