"""Backfill's pure parts: an item becomes the change the stream would make of it; versions; checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.consumer.documents import event_document, rate_action
from chalicelib.ordering import fallback_version, live_version
from chalicelib.stream.changes import Change, InvalidChange
from currencies_local.synthetic import TableModel
from currencies_ops.backfill import (
    BackfillError,
    Checkpoint,
    backfill_event_id,
    carries_version,
    item_change,
    needs_event,
)

SCANNED = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


def last_stream_change(table: TableModel) -> Change:
    return table.changes()[-1]


def same_current_state(backfilled: Change, streamed: Change) -> None:
    """The rates document and its version, as the consumer would write them for either change."""
    ours, theirs = rate_action(backfilled, "rates"), rate_action(streamed, "rates")
    assert (ours.id, ours.version, ours.document["currency"]) == (
        theirs.id,
        theirs.version,
        theirs.document["currency"],
    )


def test_a_live_item_is_an_insert_with_the_version_its_stream_change_has() -> None:
    table = TableModel()
    table.put("EUR", Decimal("1.10"))
    table.put("EUR", Decimal("1.2500"))
    change = item_change(table.items["EUR"], SCANNED)
    assert change.type == "INSERT"
    assert change.data == {"symbol": "EUR", "rate": "1.25"}
    assert change.version == live_version(table.items["EUR"]["created_at"], 2)
    same_current_state(change, last_stream_change(table))
    assert event_document(change, "2026-05-01T12:00:01.000Z")["event"]["action"] == "insert"


def test_a_tombstone_is_a_removal_with_the_tombstones_version() -> None:
    table = TableModel()
    table.put("GBP", Decimal("0.8"))
    table.delete("GBP")
    change = item_change(table.items["GBP"], SCANNED)
    assert change.type == "REMOVE"
    assert change.data == {"symbol": "GBP"}
    assert rate_action(change, "rates").document["currency"]["deleted"] is True
    same_current_state(change, last_stream_change(table))


def test_an_item_without_a_version_gets_a_fallback_below_live_versions_and_later_stream_records() -> None:
    change = item_change({"symbol": "OLD", "rate": Decimal("3.5")}, SCANNED)
    assert change.version == fallback_version(int(SCANNED.timestamp()), "0")
    assert change.version < live_version(10**12, 1)  # any live version created after September 2001
    # A write outside the API after the scan streams at the same second or later, with a sequence above 0.
    assert change.version < fallback_version(int(SCANNED.timestamp()), "1")
    assert change.occurred_at == "2026-05-01T12:00:00.250Z"
    assert not carries_version({"symbol": "OLD", "rate": Decimal("3.5")})


@pytest.mark.parametrize(
    "item",
    [
        {"symbol": "BAD", "rate": "not a number"},
        {"symbol": "BAD"},
        {"symbol": "BAD", "rate": Decimal("1"), "revision": "x", "created_at": 1},
        {"symbol": "BAD", "deleted": True, "revision": "x", "created_at": 1},
    ],
)
def test_an_item_the_api_cannot_read_is_refused(item: dict[str, Any]) -> None:
    with pytest.raises(InvalidChange):
        item_change(item, SCANNED)


def test_event_ids_are_stable_per_symbol_and_version() -> None:
    assert backfill_event_id("EUR", 5) == backfill_event_id("EUR", 5)
    assert backfill_event_id("EUR", 5) != backfill_event_id("EUR", 6)
    assert backfill_event_id("EUR", 5) != backfill_event_id("EUS", 5)
    assert len(backfill_event_id("X" * 2000, 5)) < 64
    table = TableModel()
    table.put("EUR", Decimal("1"))
    first, again = (item_change(table.items["EUR"], moment) for moment in (SCANNED, datetime.now(UTC)))
    assert first.id == again.id  # a second run's event is a duplicate of the first's


def hit(action: str, version: int, rate: str | None = None) -> dict[str, Any]:
    currency: dict[str, Any] = {"symbol": "EUR", "version": version}
    if rate is not None:
        currency["rate"] = rate
    return {"_source": {"event": {"action": action}, "currency": currency}}


def test_an_event_is_written_unless_one_of_that_version_or_newer_exists() -> None:
    table = TableModel()
    table.put("EUR", Decimal("1.5"))
    change = item_change(table.items["EUR"], SCANNED)
    assert needs_event(change, True, None)
    assert needs_event(change, True, hit("insert", change.version - 1, "1.4"))
    assert not needs_event(change, True, hit("insert", change.version, "1.5"))
    assert not needs_event(change, True, hit("modify", change.version + 1, "1.6"))


def test_an_item_without_a_version_gets_an_event_unless_the_newest_already_says_the_same() -> None:
    live = item_change({"symbol": "EUR", "rate": Decimal("1.5")}, SCANNED)
    assert not needs_event(live, False, hit("insert", 10, "1.5"))
    assert needs_event(live, False, hit("modify", 10, "1.6"))
    assert needs_event(live, False, hit("remove", 10))
    gone = item_change({"symbol": "EUR", "deleted": True}, SCANNED)
    assert gone.type == "REMOVE"
    assert not needs_event(gone, False, hit("remove", 10))
    assert needs_event(gone, False, hit("insert", 10, "1.5"))


IDENTITY = {"table": "t", "rates_index": "r", "events_index": "e", "search_url": "http://x"}


def test_a_checkpoint_survives_a_reload_segment_by_segment(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "checkpoint.json"
    checkpoint = Checkpoint.fresh(path, IDENTITY, 3)
    checkpoint.advance(0, {"symbol": {"S": "M"}})
    checkpoint.advance(1, None)
    loaded = Checkpoint.load(path, IDENTITY)
    assert loaded is not None
    assert (loaded.segments, loaded.after, loaded.done) == (3, {0: {"symbol": {"S": "M"}}, 1: None, 2: None}, {1})
    assert not loaded.complete
    loaded.advance(0, None)
    loaded.advance(2, None)
    assert Checkpoint.load(path, IDENTITY).complete  # type: ignore[union-attr]
    assert not list(tmp_path.rglob("*.tmp"))


def test_no_checkpoint_is_none(tmp_path: Path) -> None:
    assert Checkpoint.load(tmp_path / "absent.json", IDENTITY) is None


def test_a_checkpoint_of_another_target_or_unreadable_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    Checkpoint.fresh(path, IDENTITY, 2).advance(0, {"symbol": {"S": "A"}})
    with pytest.raises(BackfillError, match="belongs to"):
        Checkpoint.load(path, {**IDENTITY, "table": "other"})
    path.write_text("{not json")
    with pytest.raises(BackfillError, match="unreadable"):
        Checkpoint.load(path, IDENTITY)
    path.write_text(json.dumps({"identity": IDENTITY, "segments": 3, "after": {"0": None}, "done": []}))
    with pytest.raises(BackfillError, match="3 segments"):
        Checkpoint.load(path, IDENTITY)
