"""Unit tests for chalicelib.ordering: versions must totally order one symbol's changes."""

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.ordering import (
    REVISIONS_PER_GENERATION,
    TOMBSTONE,
    change_version,
    fallback_version,
    is_tombstone,
    live_version,
)

MAX_VERSION = 2**63
YEAR_2001_MS = 10**12
YEAR_2100_MS = 4_102_444_800_000
MAX_OPERATIONS = 60


@dataclass
class SimulatedTable:
    """One item of the `currency` table as RateStore writes it, emitting stream records.

    put on a live item or a tombstone: revision + 1 (created_at kept); put on an absent
    item: revision 1 and created_at = now; delete of a live item: a tombstone with
    revision + 1; delete of a tombstone or an absent item emits nothing. `foreign_delete`
    is a DeleteItem made outside the API (a REMOVE record; the counter is gone).
    """

    now_ms: int
    item: dict[str, Any] | None = None
    sequence: int = 10**20
    records: list[tuple[dict[str, Any] | None, dict[str, Any] | None, int, str]] = field(default_factory=list)

    def _emit(self, old: dict[str, Any] | None, new: dict[str, Any] | None, gap: int) -> None:
        self.sequence += gap
        self.item = new
        self.records.append((old, new, self.now_ms // 1000, str(self.sequence)))

    def put(self, rate: str, gap: int) -> None:
        old = self.item
        if old is None:
            new = {"symbol": "EUR", "rate": rate, "revision": 1, "created_at": self.now_ms, "updated_at": self.now_ms}
        else:
            kept = {name: value for name, value in old.items() if name != TOMBSTONE}
            new = {**kept, "rate": rate, "revision": old["revision"] + 1, "updated_at": self.now_ms}
        self._emit(old, new, gap)

    def delete(self, gap: int) -> None:
        old = self.item
        if old is not None and TOMBSTONE not in old:
            kept = {name: value for name, value in old.items() if name != "rate"}
            self._emit(old, {**kept, TOMBSTONE: True, "revision": old["revision"] + 1, "updated_at": self.now_ms}, gap)

    def foreign_delete(self, gap: int) -> None:
        if self.item is not None:
            self._emit(self.item, None, gap)


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete", "foreign_delete"]),
        st.integers(-5_000, 5_000),  # clock step in ms: the writers' clocks may go backwards
        st.integers(1, 10**12),  # sequence-number gap
        st.sampled_from(["1", "1.08", "0.5"]),
    ),
    min_size=1,
    max_size=MAX_OPERATIONS,
)


@given(
    start_ms=st.integers(YEAR_2001_MS, YEAR_2100_MS),
    initial_revision=st.one_of(
        st.none(),
        st.integers(1, 50),
        st.integers(REVISIONS_PER_GENERATION - 500, REVISIONS_PER_GENERATION + 500),
    ),
    ops=operations,
)
def test_versions_strictly_increase_along_any_history(
    start_ms: int, initial_revision: int | None, ops: list[tuple[str, int, int, str]]
) -> None:
    """Each later change of a symbol must win in the search engine, whatever the history and the clock.

    The clock matters only when the API creates an absent item after a delete made
    outside the API: there the documented precondition (the clock moved >= 1 ms, and the
    removed lifetime had fewer than 10**6 revisions) is applied.
    """
    table = SimulatedTable(now_ms=start_ms)
    if initial_revision is not None:  # an item that already had many writes before the test
        table.item = {
            "symbol": "EUR",
            "rate": "2",
            "revision": initial_revision,
            "created_at": start_ms - 1000,
            "updated_at": start_ms,
        }
    removed_outside: tuple[int, int] | None = None  # (ms, revision) of the last foreign delete
    for operation, step, gap, rate in ops:
        table.now_ms = max(table.now_ms + step, YEAR_2001_MS)
        if operation == "put":
            if table.item is None and removed_outside is not None:
                if removed_outside[1] >= REVISIONS_PER_GENERATION:
                    continue  # outside the documented precondition
                table.now_ms = max(table.now_ms, removed_outside[0] + 1)
            table.put(rate, gap)
        elif operation == "delete":
            table.delete(gap)
        else:
            if table.item is not None:
                removed_outside = (max(table.now_ms, table.item["created_at"]), table.item["revision"])
            table.foreign_delete(gap)

    versions = [change_version(*record) for record in table.records]
    assert all(0 <= version < MAX_VERSION for version in versions)
    assert all(earlier < later for earlier, later in itertools.pairwise(versions)), versions


def test_a_recreate_after_an_api_delete_is_above_it_whatever_the_clock() -> None:
    """The issue's race: the re-creating writer read its clock long before the delete."""
    live = {"symbol": "EUR", "rate": "1", "revision": 7, "created_at": YEAR_2100_MS, "updated_at": YEAR_2100_MS}
    tombstone = {"symbol": "EUR", TOMBSTONE: True, "revision": 8, "created_at": YEAR_2100_MS, "updated_at": 5}
    recreated = {**live, "revision": 9, "updated_at": YEAR_2001_MS}  # a clock a century behind
    removed = change_version(live, tombstone, 0, "1")
    assert removed == change_version(live, None, 0, "1")  # as a REMOVE record of the live item would be
    assert change_version(live, live | {"revision": 7}, 0, "0") < removed < change_version(tombstone, recreated, 0, "2")


def test_delete_outside_the_api_at_the_last_revision_of_a_generation_is_beaten_by_a_recreate() -> None:
    """The tightest clock-dependent case: revision 10**6 - 1 removed by DeleteItem, re-created 1 ms later."""
    old = {"symbol": "EUR", "rate": "1", "revision": 10**6 - 1, "created_at": YEAR_2001_MS}
    removed = change_version(old, None, 0, "1")
    recreated = change_version(
        None, {"symbol": "EUR", "rate": "1", "revision": 1, "created_at": YEAR_2001_MS + 1}, 0, "2"
    )
    assert removed == YEAR_2001_MS * 10**6 + 10**6
    assert recreated == YEAR_2001_MS * 10**6 + 10**6 + 1
    assert removed < recreated


def test_remove_version_is_one_above_the_image_it_deleted() -> None:
    old = {"symbol": "EUR", "rate": "1", "revision": 7, "created_at": 1_700_000_000_000}
    assert change_version(old, None, 1_700_000_000, "5") == 1_700_000_000_000_000_008


def test_written_images_carry_their_own_version() -> None:
    old = {"symbol": "EUR", "rate": "1", "revision": 7, "created_at": 1_700_000_000_000}
    new = {**old, "revision": 8}
    assert change_version(old, new, 0, "5") == 1_700_000_000_000_000_008
    assert change_version(None, {**old, "revision": 1}, 0, "5") == 1_700_000_000_000_000_001


@pytest.mark.parametrize("revision", ["abc", "1.5.2", [1]])
def test_a_removal_of_an_unreadable_image_falls_back_instead_of_failing(revision: object) -> None:
    old = {"symbol": "EUR", "rate": "1", "revision": revision, "created_at": 1_700_000_000_000}
    assert change_version(old, None, 1_700_000_000, "123400000042") == fallback_version(1_700_000_000, "42")


def test_a_written_image_with_an_unreadable_revision_raises() -> None:
    with pytest.raises(ValueError, match="abc"):
        change_version(None, {"symbol": "EUR", "rate": "1", "revision": "abc", "created_at": 1}, 0, "1")


def test_tombstones_are_told_by_the_attribute_whatever_its_value() -> None:
    assert is_tombstone({"symbol": "EUR", TOMBSTONE: True})
    assert is_tombstone({"symbol": "EUR", TOMBSTONE: False})  # as the store's attribute_exists() sees it
    assert not is_tombstone({"symbol": "EUR", "rate": "1"})
    assert not is_tombstone(None)


@pytest.mark.parametrize(
    "image",
    [
        None,
        {},
        {"symbol": "EUR", "rate": "1"},
        {"symbol": "EUR", "rate": "1", "revision": 3},  # an old item later written by the API
        {"symbol": "EUR", "rate": "1", "created_at": 1_700_000_000_000},
    ],
)
@pytest.mark.parametrize("event", ["INSERT", "MODIFY", "REMOVE"])
def test_images_without_both_attributes_get_the_fallback(event: str, image: dict[str, Any] | None) -> None:
    old, new = (image, None) if event == "REMOVE" else (None, image)
    assert change_version(old, new, 1_700_000_000, "123400000042") == 1_700_000_000 * 10**8 + 42


@given(
    occurred_s=st.integers(0, 10**10 - 1),
    sequence=st.integers(0, 10**40 - 1),
    created_at_ms=st.integers(YEAR_2001_MS, (MAX_VERSION - 1) // REVISIONS_PER_GENERATION - 1),
    revision=st.integers(1, REVISIONS_PER_GENERATION - 1),
    event=st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
)
def test_fallback_versions_are_below_every_live_version(
    occurred_s: int, sequence: int, created_at_ms: int, revision: int, event: str
) -> None:
    """A backfilled item must never overwrite one written by the API."""
    bare = {"symbol": "EUR", "rate": "1"}
    old, new = (bare, None) if event == "REMOVE" else (None, bare)
    fallback = change_version(old, new, occurred_s, str(sequence))
    assert fallback == fallback_version(occurred_s, str(sequence))
    assert 0 <= fallback < 10**18
    live = live_version(created_at_ms, revision)
    assert fallback < live < MAX_VERSION


def test_fallback_versions_follow_the_sequence_within_one_second() -> None:
    assert fallback_version(1_700_000_000, "1100000000999999") < fallback_version(1_700_000_000, "1100000001000000")


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known limitation (docs/design.md): fallback_version keeps int(sequence) % 10**8, which wraps, so "
    "two changes of one item in the same stream second can be misordered at the wrap",
)
def test_fallback_versions_follow_the_sequence_across_the_wrap() -> None:
    assert fallback_version(1_700_000_000, "99999999") < fallback_version(1_700_000_000, "100000000")
