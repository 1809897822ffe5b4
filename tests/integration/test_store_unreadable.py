"""Items another writer left unreadable, on a real moto server: reads skip them (logged, counted),
DELETE removes them, PUT replaces them, and the stream still carries each API write in version order."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.api.currency import CurrencyRate
from chalicelib.api.store import RateStore, UnreadableItem
from chalicelib.observability import metrics
from chalicelib.stream.changes import InvalidChange, change_from_record
from tests.integration.store_support import StreamedTable, moto_server

__all__ = ["moto_server"]  # the module fixture, used here

UNREADABLE: dict[str, dict[str, Any]] = {
    "no-rate": {"revision": 3, "created_at": 1_800_000_000_000},
    "rate-not-a-number": {"rate": "abc", "revision": 3, "created_at": 1_800_000_000_000},
    "revision-not-a-number": {"rate": Decimal("1.5"), "revision": "three", "created_at": 1_800_000_000_000},
    "created-at-not-a-number": {"rate": Decimal("1.5"), "revision": 3, "created_at": "yesterday"},
}


@pytest.fixture
def streamed(moto_server: str) -> Iterator[StreamedTable]:
    table = StreamedTable(moto_server)
    yield table
    table.drop()


def unreadable_count() -> float:
    return metrics.REGISTRY.get_sample_value("currencies_store_unreadable_items_total") or 0.0


def api_versions(streamed: StreamedTable, symbol: str) -> list[tuple[str, int]]:
    """(type, version) of the symbol's convertible records; the other writer's own records are not."""
    converted = []
    for record in streamed.records():
        try:
            change = change_from_record(record, datetime.now(UTC))
        except InvalidChange:
            continue
        if change.symbol == symbol:
            converted.append((change.type, change.version))
    return converted


@pytest.mark.parametrize("shape", list(UNREADABLE))
def test_get_treats_an_unreadable_item_as_absent_and_counts_it(
    streamed: StreamedTable, shape: str, caplog: pytest.LogCaptureFixture
) -> None:
    streamed.table.put_item(Item={"symbol": "EUR", **UNREADABLE[shape]})
    store = RateStore(streamed.table)
    before = unreadable_count()
    with caplog.at_level(logging.WARNING, logger="chalicelib.api.store"):
        assert store.get("EUR") is None
    assert unreadable_count() == before + 1
    assert [record.symbol for record in caplog.records] == ["EUR"]  # type: ignore[attr-defined]
    assert store.list() == []


@pytest.mark.parametrize("shape", list(UNREADABLE))
def test_delete_removes_an_unreadable_item_and_the_stream_carries_it(streamed: StreamedTable, shape: str) -> None:
    """API writes, another writer breaks the item, the API deletes and re-creates it: each API
    write reaches the stream as a change the indices can apply, in version order."""
    store = RateStore(streamed.table)
    store.put(CurrencyRate("EUR", Decimal("1")))
    streamed.table.put_item(Item={"symbol": "EUR", **UNREADABLE[shape]})

    assert store.delete("EUR") == UnreadableItem("EUR")
    assert store.get("EUR") is None
    assert store.delete("EUR") is None  # already deleted: the API answers 404
    stored, created = store.put(CurrencyRate("EUR", Decimal("2")))
    assert (stored.rate, created) == (Decimal("2"), True)

    versions = api_versions(streamed, "EUR")
    assert [kind for kind, _ in versions][-2:] == ["REMOVE", "INSERT"]
    assert all(a[1] < b[1] for a, b in itertools.pairwise(versions[-2:]))
    removed = versions[-2][1]
    if shape in ("no-rate", "rate-not-a-number"):  # the counter was intact: the delete continues it
        assert removed > versions[0][1]


@pytest.mark.parametrize("shape", list(UNREADABLE))
def test_put_replaces_an_unreadable_item(streamed: StreamedTable, shape: str) -> None:
    streamed.table.put_item(Item={"symbol": "EUR", **UNREADABLE[shape]})
    store = RateStore(streamed.table)
    stored, _ = store.put(CurrencyRate("EUR", Decimal("2.5")))
    assert store.get("EUR") == stored
    assert stored.rate == Decimal("2.5")
    assert api_versions(streamed, "EUR")[-1][0] in ("INSERT", "MODIFY")
