"""Replay's pure parts: an event document becomes its change again; newest per symbol; the alias swap; windows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.consumer.documents import event_document, rate_action
from chalicelib.stream.changes import Change, InvalidChange
from currencies_local.synthetic import random_table
from currencies_ops.replay import (
    change_from_event,
    events_query,
    newest_per_symbol,
    swap_actions,
    timestamped,
)

SYMBOLS = ["EUR", "GBP", "JPY", "USD"]


def current_state(change: Change) -> tuple[str, int | None, dict[str, Any]]:
    action = rate_action(change, "rates")
    currency = {name: value for name, value in action.document["currency"].items() if name != "updated_at"}
    return action.id, action.version, currency


@given(changes=st.integers(1, 60), seed=st.integers(0, 10_000))
@settings(max_examples=50, deadline=None)
def test_an_event_replays_as_the_rates_document_its_change_made(changes: int, seed: int) -> None:
    for change in random_table(changes, SYMBOLS, seed).changes():
        replayed = change_from_event(event_document(change, "2026-05-01T00:00:00.000Z"))
        assert current_state(replayed) == current_state(change)
        assert (replayed.id, replayed.type, replayed.occurred_at) == (change.id, change.type, change.occurred_at)


def test_a_replayed_document_is_dated_by_its_event() -> None:
    change = random_table(1, ["EUR"]).changes()[0]
    replayed = change_from_event(event_document(change, "2026-05-01T00:00:00.000Z"))
    moment = datetime.fromisoformat(change.occurred_at)
    assert rate_action(replayed, "rates").document["currency"]["updated_at"] == int(moment.timestamp() * 1000)


@pytest.mark.parametrize(
    "source",
    [
        {},
        {"currency": {"symbol": "EUR", "rate": "1"}, "event": {"id": "x", "action": "insert"}},  # no version
        {"@timestamp": "2026-01-01T00:00:00Z", "currency": {"symbol": "EUR", "version": 1}, "event": {"id": "x"}},
        {
            "@timestamp": "2026-01-01T00:00:00Z",
            "currency": {"symbol": "EUR", "version": 1},
            "event": {"id": "x", "action": "insert"},  # an insert without a rate
        },
        {
            "@timestamp": "not a time",
            "currency": {"symbol": "EUR", "version": 1, "rate": "1"},
            "event": {"id": "x", "action": "modify"},
        },
    ],
)
def test_a_document_the_pipeline_did_not_write_is_refused(source: dict[str, Any]) -> None:
    with pytest.raises(InvalidChange):
        change_from_event(source)


def event_hit(symbol: str, version: int) -> dict[str, Any]:
    return {"_id": f"{symbol}{version}", "_source": {"currency": {"symbol": symbol, "version": version}}}


def test_the_newest_event_of_a_symbol_straddling_pages_is_taken_once() -> None:
    pages = [
        [event_hit("EUR", 9), event_hit("EUR", 3), event_hit("GBP", 7)],
        [event_hit("GBP", 5), event_hit("JPY", 2)],
        [event_hit("JPY", 1)],
    ]
    seen = list(newest_per_symbol(iter(pages)))
    assert [page for page, _ in seen] == pages
    assert [[hit["_id"] for hit in newest] for _, newest in seen] == [["EUR9", "GBP7"], ["JPY2"], []]


def test_the_first_swap_turns_the_concrete_index_into_an_alias_in_one_request() -> None:
    assert swap_actions("rates", "rates-new", None) == [
        {"add": {"index": "rates-new", "alias": "rates"}},
        {"remove_index": {"index": "rates"}},
    ]


def test_a_later_swap_moves_the_alias_off_the_indices_it_named_without_deleting_them_yet() -> None:
    assert swap_actions("rates", "rates-3", ["rates-1", "rates-2"]) == [
        {"add": {"index": "rates-3", "alias": "rates"}},
        {"remove": {"index": "rates-1", "alias": "rates"}},
        {"remove": {"index": "rates-2", "alias": "rates"}},
    ]


def test_new_index_names_are_lower_case_and_match_the_template_pattern() -> None:
    name = timestamped("currency-rates", datetime(2026, 5, 1, 12, 30, 5, 123456, tzinfo=UTC))
    assert name == "currency-rates-20260501t123005123456z"
    assert name == name.lower()
    assert name.startswith("currency-rates")


def test_a_window_filters_on_the_event_time() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    filters = events_query(start, end)["bool"]["filter"]
    assert {"range": {"@timestamp": {"gte": "2026-01-01T00:00:00.000Z", "lte": "2026-01-02T00:00:00.000Z"}}} in filters
    assert events_query()["bool"]["filter"] == [{"exists": {"field": "currency.symbol"}}]
    since = events_query(ingested_since=start)["bool"]["filter"]
    assert {"range": {"event.ingested": {"gte": "2026-01-01T00:00:00.000Z"}}} in since
