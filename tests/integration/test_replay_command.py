"""`currencies replay` on indices of its own: repairs in place, rebuilds into a new index behind an alias
while readers keep reading and changes keep flowing, and copies a window of events.

The truth is a table built by `TableModel` (what RateStore does) and loaded into a DynamoDB table of
this module's own, so `verify` can judge the indices; the indices are filled by the production
consumer (`consume`) from the changes the stream handler makes of the model's stream records.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from chalicelib.api.currency import format_rate
from chalicelib.config import Settings
from chalicelib.consumer.documents import Action, event_document
from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.sinks.sink import SearchSink
from chalicelib.stream.changes import Change
from currencies_local.cli import main
from currencies_local.moto import aws_environment
from currencies_local.pipeline import LocalPipeline
from currencies_local.synthetic import TableModel, random_table
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target
from currencies_ops.verify import verify
from tests.integration.engines import EngineUnderTest

SYMBOLS = [f"RP{n:02d}" for n in range(60)]


@dataclass
class Deployment:
    """A table and two indices of this test's own, and the model whose state the table holds."""

    environment: dict[str, str]
    search: EngineUnderTest
    model: TableModel
    sink: SearchSink = field(init=False)

    def __post_init__(self) -> None:
        self.sink = SearchSink(self.target().search, self.events_index, self.rates_index)

    @property
    def rates_index(self) -> str:
        return self.environment["CURRENCIES_RATES_INDEX"]

    @property
    def events_index(self) -> str:
        return self.environment["CURRENCIES_EVENTS_INDEX"]

    def target(self) -> Target:
        aws = {name: value for name, value in self.environment.items() if name.startswith("AWS_")}
        return Target(Settings.from_env(self.environment), "test", aws)

    def index(self, changes: list[Change], receives: int = 1) -> None:
        """As the consumer indexes them; a failed message is received again, up to `receives` times, as SQS does."""
        for start in range(0, len(changes), 10):
            batch = [InboundMessage(c.id, c.to_json()) for c in changes[start : start + 10]]
            for _ in range(receives):
                report = consume(batch, self.sink, events_index=self.events_index, rates_index=self.rates_index)
                batch = [message for message in batch if message.message_id in report.failed_ids]
                if not batch:
                    break
            assert not batch, report.outcomes

    def index_events_only(self, changes: list[Change]) -> None:
        """Changes whose rates writes were lost (e.g. the rates index restored from an old snapshot)."""
        actions = [
            Action("create", self.events_index, c.id, event_document(c, "2026-01-01T00:00:00Z")) for c in changes
        ]
        assert all(result.status == 201 for result in self.sink.write(actions))

    def save_table(self) -> None:
        with boto3.resource("dynamodb").Table(self.environment["CURRENCIES_TABLE"]).batch_writer() as batch:
            for item in self.model.items.values():
                batch.put_item(Item=item)

    def differences(self) -> set[tuple[str, str]]:
        """What verify finds once the indices' latest writes are searchable (verify searches them)."""
        self.search.client.indices.refresh(index=f"{self.rates_index},{self.events_index}")
        report = verify(self.target(), OperationMetrics("verify", None), max_differences=1000)
        return {(difference.kind, difference.symbol) for difference in report.differences}

    def listed(self) -> dict[str, str]:
        """What a reader of the rates name lists: symbol -> rate text."""
        return self.search.listed_rates(self.rates_index)

    def replay(self, *args: str) -> dict[str, Any]:
        result = CliRunner().invoke(main, ["replay", "--json", *args], env=self.environment)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


@pytest.fixture
def deployment(pipeline: LocalPipeline, search: EngineUnderTest) -> Iterator[Deployment]:
    suffix = uuid.uuid4().hex[:8]
    table = f"replay-{suffix}"
    boto3.client("dynamodb").create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    environment = {
        **aws_environment(pipeline.moto_url),
        **pipeline.environment,
        "CURRENCIES_TABLE": table,
        "CURRENCIES_RATES_INDEX": f"rp-{suffix}-rates",
        "CURRENCIES_EVENTS_INDEX": f"rp-{suffix}-events",
        "CURRENCIES_SEARCH_URL": search.url,
    }
    environment.pop("CURRENCIES_PUSHGATEWAY_URL", None)
    yield Deployment(environment, search, random_table(600, SYMBOLS, seed=11))
    boto3.client("dynamodb").delete_table(TableName=table)
    for name in (environment["CURRENCIES_RATES_INDEX"], environment["CURRENCIES_EVENTS_INDEX"]):
        for index in search.client.indices.get(index=f"{name}*"):  # deletes take names, not patterns
            search.client.indices.delete(index=index)
        search.client.indices.delete_index_template(name=f"{name}-template")


def index_by_hand(search: EngineUnderTest, index: str, symbol: str, source: dict[str, Any]) -> None:
    """An operator's write with internal versioning: the document's version becomes one above the pipeline's."""
    if search.name == "opensearch":
        search.client.index(index=index, id=symbol, body=source, refresh="wait_for")
    else:
        search.client.index(index=index, id=symbol, document=source, refresh="wait_for")


def corrupt(deployment: Deployment) -> tuple[str, str]:
    """Lost rates writes (older and missing documents), a stray document and a hand-written wrong rate."""
    changes = deployment.model.changes()
    deployment.index(changes[:-80])
    deployment.index_events_only(changes[-80:])
    deployment.save_table()
    lost = {change.symbol for change in changes[-80:]}
    stray, wrong = "RPZZ", min(set(deployment.model.rates()) - lost)
    index_by_hand(deployment.search, deployment.rates_index, stray, {"currency": {"symbol": stray, "rate": "9"}})
    document = deployment.search.client.get(index=deployment.rates_index, id=wrong)["_source"]
    document["currency"]["rate"] = "12345"
    index_by_hand(deployment.search, deployment.rates_index, wrong, document)
    deployment.search.client.indices.refresh(index=deployment.events_index)  # the replay reads what a search sees
    return stray, wrong


def model_rates(model: TableModel) -> dict[str, str]:
    return {symbol: format_rate(rate) for symbol, rate in model.rates().items()}


def test_in_place_fills_in_older_and_missing_documents_and_leaves_what_only_a_rebuild_replaces(
    deployment: Deployment,
) -> None:
    stray, wrong = corrupt(deployment)
    before = deployment.differences()
    kinds = {kind for kind, _ in before}
    assert {"older_version", "extra", "different_rate", "newer_version"} <= kinds, before

    report = deployment.replay()
    assert report["complete"]
    assert report["events_read"] == 600
    assert report["symbols"]["total"] == len(deployment.model.items)
    assert report["symbols"]["written"] >= 1
    assert deployment.differences() == {("extra", stray), ("different_rate", wrong), ("newer_version", wrong)}


class Reader(threading.Thread):
    """Queries the rates name as a dashboard does, over and over, and keeps what each query found."""

    def __init__(self, search: EngineUnderTest, name: str) -> None:
        super().__init__(daemon=True)
        self._name = name
        # No client-side retries: every answer the reader gets is one a dashboard would get.
        self._client = search.client.options(max_retries=0) if search.name == "elasticsearch" else search.client
        self.stopped = threading.Event()
        self.hits: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        body = {"query": {"prefix": {"currency.symbol": "RP"}}, "size": 0, "track_total_hits": True}
        while not self.stopped.is_set():
            try:
                response = self._client.search(index=self._name, body=body)
                self.hits.append(response["hits"]["total"]["value"])
            except Exception as error:
                self.errors.append(repr(error))


def aliased(search: EngineUnderTest, name: str) -> list[str]:
    return sorted(search.client.indices.get_alias(name=name))


def test_into_new_index_swaps_the_alias_while_readers_read_and_changes_flow(deployment: Deployment) -> None:
    corrupt(deployment)
    deployment.search.client.indices.refresh(index=deployment.rates_index)
    reader = Reader(deployment.search, deployment.rates_index)
    reader.start()
    more = TableModel(now_ms=deployment.model.now_ms, items=dict(deployment.model.items))
    writing = threading.Event()
    writing.set()
    changed: list[int] = []

    def live_changes() -> None:
        """Changes through the consumer (writing through the rates name) during the replay."""
        n = 0
        while writing.is_set():
            more.put(SYMBOLS[n % len(SYMBOLS)], Decimal(n + 1).scaleb(-2))
            deployment.index([more.changes()[-1]], receives=5)
            changed.append(n)
            n += 1

    writer = threading.Thread(target=live_changes, daemon=True)
    writer.start()
    try:
        first = deployment.replay("--into-new-index")
        # The first swap deletes the concrete index: a search running on it at that instant fails.
        failed_at_first_swap, reader.errors = reader.errors, []
        second = deployment.replay("--into-new-index")
    finally:
        writing.clear()
        writer.join()
        reader.stopped.set()
        reader.join()
    assert len(changed) > 10, "changes flowed during the replays"
    assert len(failed_at_first_swap) <= 2, failed_at_first_swap
    assert all("503" in error for error in failed_at_first_swap), failed_at_first_swap
    assert reader.errors == [], "moving an alias between indices fails no search"
    assert len(reader.hits) > 10
    assert min(reader.hits) > 0, "readers saw an empty index"
    assert first["complete"]
    assert first["alias_moved_from"] == [deployment.rates_index]  # the concrete index, deleted
    assert second["alias_moved_from"] == [first["rates_index"]]
    assert aliased(deployment.search, deployment.rates_index) == [second["rates_index"]]
    assert not deployment.search.client.indices.exists(index=first["rates_index"])
    deployment.model = more
    deployment.save_table()
    assert deployment.differences() == set()
    assert deployment.listed() == model_rates(more)


def test_a_window_is_copied_into_a_fresh_events_index(deployment: Deployment) -> None:
    model = TableModel(now_ms=1_800_000_000_000)
    for n in range(30):
        model.now_ms += 60_000  # a change a minute
        model.put(SYMBOLS[n % 3], Decimal(n + 1))
    deployment.model = model
    changes = model.changes()
    deployment.index(changes)
    deployment.save_table()
    deployment.search.client.indices.refresh(index=deployment.events_index)
    start = datetime.fromisoformat(changes[10].occurred_at)
    end = start + timedelta(minutes=9)
    inside = {c.id for c in changes if start <= datetime.fromisoformat(c.occurred_at) <= end}
    assert len(inside) == 10

    report = deployment.replay("--from", start.isoformat(), "--to", end.astimezone(UTC).isoformat())
    copy = report["events_copy"]["index"]
    assert report["events_read"] == len(inside)
    assert report["events_copy"]["copied"] == len(inside)
    assert copy.startswith(deployment.events_index + "-")
    deployment.search.client.indices.refresh(index=copy)
    body = {"query": {"match_all": {}}, "size": 100}
    found = deployment.search.client.search(index=copy, body=body)["hits"]["hits"]
    assert {hit["_id"] for hit in found} == inside
    assert deployment.differences() == set()  # the window's versions are below the index's: nothing regressed
