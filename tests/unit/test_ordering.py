"""Unit tests for chalicelib.ordering: versions must totally order one symbol's changes."""

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.ordering import REVISIONS_PER_GENERATION, change_version, fallback_version, live_version

MAX_VERSION = 2**63
YEAR_2001_MS = 10**12
YEAR_2100_MS = 4_102_444_800_000
MAX_OPERATIONS = 60


@dataclass
class SimulatedTable:
    """One item of the `currency` table as RateStore writes it, emitting stream changes.

    put on an existing item: revision + 1 (created_at kept); put on an absent item:
    revision 1 and created_at = now; delete of an absent item emits nothing (as in DynamoDB).
    """

    now_ms: int
    item: dict[str, Any] | None = None
    sequence: int = 10**20
    changes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None, int, str]] = field(default_factory=list)

    def _emit(self, event: str, old: dict[str, Any] | None, new: dict[str, Any] | None, gap: int) -> None:
        self.sequence += gap
        self.changes.append((event, old, new, self.now_ms // 1000, str(self.sequence)))

    def put(self, rate: str, gap: int) -> None:
        old = self.item
        if old is None:
            new = {"symbol": "EUR", "rate": rate, "revision": 1, "created_at": self.now_ms, "updated_at": self.now_ms}
            self.item = new
            self._emit("INSERT", None, new, gap)
        else:
            new = {**old, "rate": rate, "revision": old["revision"] + 1, "updated_at": self.now_ms}
            self.item = new
            self._emit("MODIFY", old, new, gap)

    def delete(self, gap: int) -> None:
        if self.item is not None:
            old, self.item = self.item, None
            self._emit("REMOVE", old, None, gap)


operations = st.lists(
    st.tuples(
        st.sampled_from(["put", "delete"]),
        st.integers(0, 5_000),  # clock step in ms (0: same millisecond)
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
        st.integers(REVISIONS_PER_GENERATION - 500, REVISIONS_PER_GENERATION - MAX_OPERATIONS - 1),
    ),
    ops=operations,
)
def test_versions_strictly_increase_along_any_history(
    start_ms: int, initial_revision: int | None, ops: list[tuple[str, int, int, str]]
) -> None:
    """Each later change of a symbol must win in the search engine, whatever the history."""
    table = SimulatedTable(now_ms=start_ms)
    if initial_revision is not None:  # an item that already had many writes before the test
        table.item = {
            "symbol": "EUR",
            "rate": "2",
            "revision": initial_revision,
            "created_at": start_ms - 1000,
            "updated_at": start_ms,
        }
    last_delete_ms: int | None = None
    for operation, step, gap, rate in ops:
        table.now_ms += step
        if operation == "put" and table.item is None and last_delete_ms is not None:
            # The documented precondition: the clock moves >= 1 ms between a delete and a re-create.
            table.now_ms = max(table.now_ms, last_delete_ms + 1)
        if operation == "put":
            table.put(rate, gap)
        else:
            if table.item is not None:
                last_delete_ms = table.now_ms
            table.delete(gap)

    versions = [change_version(*change) for change in table.changes]
    assert all(0 <= version < MAX_VERSION for version in versions)
    assert all(earlier < later for earlier, later in itertools.pairwise(versions)), list(
        zip([c[0] for c in table.changes], versions, strict=True)
    )


def test_delete_at_the_last_revision_of_a_generation_is_beaten_by_a_recreate() -> None:
    """The tightest case: revision 10**6 - 1 removed, re-created 1 ms later."""
    old = {"symbol": "EUR", "rate": "1", "revision": 10**6 - 1, "created_at": YEAR_2001_MS}
    removed = change_version("REMOVE", old, None, 0, "1")
    recreated = change_version(
        "INSERT", None, {"symbol": "EUR", "rate": "1", "revision": 1, "created_at": YEAR_2001_MS + 1}, 0, "2"
    )
    assert removed == YEAR_2001_MS * 10**6 + 10**6
    assert recreated == YEAR_2001_MS * 10**6 + 10**6 + 1
    assert removed < recreated


def test_remove_version_is_one_above_the_image_it_deleted() -> None:
    old = {"symbol": "EUR", "rate": "1", "revision": 7, "created_at": 1_700_000_000_000}
    assert change_version("REMOVE", old, None, 1_700_000_000, "5") == 1_700_000_000_000_000_008


def test_insert_and_modify_use_the_new_image() -> None:
    old = {"symbol": "EUR", "rate": "1", "revision": 7, "created_at": 1_700_000_000_000}
    new = {**old, "revision": 8}
    assert change_version("MODIFY", old, new, 0, "5") == 1_700_000_000_000_000_008
    assert change_version("INSERT", None, {**old, "revision": 1}, 0, "5") == 1_700_000_000_000_000_001


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
    assert change_version(event, old, new, 1_700_000_000, "123400000042") == 1_700_000_000 * 10**8 + 42


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
    fallback = change_version(event, old, new, occurred_s, str(sequence))
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
