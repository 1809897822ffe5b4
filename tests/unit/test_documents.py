"""Unit tests for chalicelib.consumer.documents: which writes make redelivery and reordering harmless."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.consumer.documents import SEQUENCE_DIGITS, Action, actions_for, event_document
from chalicelib.stream.changes import Change

EVENTS = "currencies-events"
RATES = "currencies-rates"
INGESTED_AT = "2024-05-01T12:30:16.000Z"
OLD = {"symbol": "EUR", "rate": "1.08", "revision": 4, "created_at": 1, "updated_at": 10}
NEW = {"symbol": "EUR", "rate": "1.09", "revision": 5, "created_at": 1, "updated_at": 20}


def make_change(kind: str, *, sequence: str = "42", version: int = 1_000_005) -> Change:
    old = None if kind == "INSERT" else OLD
    new = None if kind == "REMOVE" else NEW
    data = {"symbol": "EUR"} if kind == "REMOVE" else {"symbol": "EUR", "rate": "1.09"}
    return Change(
        type=kind,  # type: ignore[arg-type]
        data=data,
        id=f"event-{kind.lower()}",
        sequence=sequence,
        version=version,
        occurred_at="2024-05-01T12:30:15.000Z",
        published_at="2024-05-01T12:30:15.500Z",
        old=old,
        new=new,
    )


def actions(change: Change) -> list[Action]:
    return actions_for(change, events_index=EVENTS, rates_index=RATES, ingested_at=INGESTED_AT)


@pytest.mark.parametrize("kind", ["INSERT", "MODIFY"])
def test_write_gives_an_event_create_and_a_versioned_rate_index(kind: str) -> None:
    change = make_change(kind)
    event, rate = actions(change)

    # create (not index) so that a redelivered change conflicts instead of overwriting
    assert (event.operation, event.index, event.id, event.version) == ("create", EVENTS, change.id, None)
    assert event.document is not None
    assert event.document["event"]["id"] == change.id

    # external version so that an older change can never overwrite a newer one
    assert (rate.operation, rate.index, rate.id, rate.version) == ("index", RATES, "EUR", 1_000_005)
    assert rate.document is not None
    assert rate.document["currency"] == {"symbol": "EUR", "rate": "1.09", "version": 1_000_005, "updated_at": 20}
    assert rate.document["event"] == {"id": change.id}
    assert rate.document["@timestamp"] == change.occurred_at


def test_remove_marks_the_symbol_deleted_and_keeps_its_version() -> None:
    """A marker, not a delete: the engine forgets deletes, and a late redrive would resurrect the symbol."""
    change = make_change("REMOVE", version=1_000_006)
    event, rate = actions(change)
    assert (event.operation, event.index, event.id) == ("create", EVENTS, change.id)
    assert (rate.operation, rate.index, rate.id, rate.version) == ("index", RATES, "EUR", 1_000_006)
    assert rate.document["currency"] == {"symbol": "EUR", "version": 1_000_006, "deleted": True}
    assert rate.document["@timestamp"] == change.occurred_at


@pytest.mark.parametrize(
    ("kind", "action", "event_type", "rate", "previous"),
    [
        ("INSERT", "insert", "creation", "1.09", None),
        ("MODIFY", "modify", "change", "1.09", "1.08"),
        ("REMOVE", "remove", "deletion", None, "1.08"),
    ],
)
def test_event_document(kind: str, action: str, event_type: str, rate: str | None, previous: str | None) -> None:
    change = make_change(kind)
    document = event_document(change, INGESTED_AT)
    assert document["@timestamp"] == change.occurred_at
    assert document["event"]["action"] == action
    assert document["event"]["type"] == [event_type]
    assert document["event"]["created"] == change.published_at
    assert document["event"]["ingested"] == INGESTED_AT
    currency: dict[str, Any] = document["currency"]
    assert currency["symbol"] == "EUR"
    assert currency["version"] == change.version
    assert currency.get("rate") == rate
    assert currency.get("previous_rate") == previous
    assert ("rate" in currency) == (rate is not None)
    assert ("previous_rate" in currency) == (previous is not None)


def test_event_revision_comes_from_the_new_image_else_the_old() -> None:
    assert event_document(make_change("MODIFY"), INGESTED_AT)["currency"]["revision"] == 5
    assert event_document(make_change("REMOVE"), INGESTED_AT)["currency"]["revision"] == 4


def padded(sequence: int) -> str:
    return event_document(make_change("INSERT", sequence=str(sequence)), INGESTED_AT)["event"]["sequence"]


@given(st.integers(0, 10**SEQUENCE_DIGITS - 1), st.integers(0, 10**SEQUENCE_DIGITS - 1))
def test_padded_sequences_sort_like_numbers(first: int, second: int) -> None:
    """The keyword field sorts as text; stream order must survive that."""
    one, other = padded(first), padded(second)
    assert len(one) == len(other) == SEQUENCE_DIGITS
    assert int(one) == first
    assert (one < other) == (first < second)
    assert (one == other) == (first == second)


def test_padding_example() -> None:
    assert padded(7) == "0" * 39 + "7"
