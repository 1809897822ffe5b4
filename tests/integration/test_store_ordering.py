"""Concurrent writers through RateStore on a real moto server: versions strictly increase per symbol.

The versions are those the stream handler computes (`change_from_record`) from the
stream records moto emits, read in stream order. Three ways in: the issue's race
scripted call by call; random interleavings of writers, one DynamoDB call at a time,
drawn by hypothesis (with writers' clocks skewed, even running backwards); and eight
threads racing for real.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.api.currency import CurrencyRate
from chalicelib.api.store import RateStore
from chalicelib.stream.changes import Change
from tests.integration.store_support import StreamedTable, moto_server

__all__ = ["moto_server"]  # the module fixture, used here

SYMBOLS = ["EUR", "USD", "JPY"]
START_MS = 1_800_000_000_000


@pytest.fixture
def streamed(moto_server: str) -> Iterator[StreamedTable]:
    table = StreamedTable(moto_server)
    yield table
    table.drop()


def ticking_clock(start_ms: int) -> Callable[[], int]:
    """A clock that moves forward 1 ms at every read: versions must not need even that."""
    ticks = itertools.count(start_ms)
    return lambda: next(ticks)


def assert_ordered_and_converged(streamed: StreamedTable, results: list[tuple[str, str, object]]) -> list[Change]:
    """Every symbol's versions strictly increase in stream order, its last change is what the
    table holds, and each write the store reported made exactly one change of its kind."""
    changes = streamed.changes()
    store = RateStore(streamed.table)
    for symbol in {change.symbol for change in changes}:
        versions = [(change.type, change.version) for change in changes if change.symbol == symbol]
        backwards = [(a, b) for a, b in itertools.pairwise(versions) if a[1] >= b[1]]
        assert not backwards, (
            f"{symbol}: {len(backwards)} of {len(versions)} changes not above the one before: {backwards[:3]}"
        )
        last = [change for change in changes if change.symbol == symbol][-1]
        stored = store.get(symbol)
        if last.type == "REMOVE":
            assert stored is None, f"{symbol}: the last change is a REMOVE but the table has {stored}"
        else:
            assert stored is not None, f"{symbol}: the last change is an {last.type} but the table has nothing"
            assert (Decimal(last.data["rate"]), last.new and last.new["revision"]) == (stored.rate, stored.revision)
    expected = Counter(
        (symbol, "INSERT" if outcome is True else "MODIFY" if outcome is False else "REMOVE")
        for symbol, _, outcome in results
        if outcome is not None
    )
    assert Counter((change.symbol, change.type) for change in changes) == expected
    return changes


def run(store: RateStore, symbol: str, operation: str, rate: Decimal) -> object:
    """One API write; the outcome as the API would report it (created, updated, deleted, nothing)."""
    if operation == "put":
        return store.put(CurrencyRate(symbol, rate))[1]
    return "deleted" if store.delete(symbol) is not None else None


class CallHook:
    """A table whose `before` runs once, just before the first call of the named operation."""

    def __init__(self, table: Any, operation: str, before: Callable[[], None]) -> None:
        self._table, self._operation, self._before = table, operation, before
        self.meta = table.meta

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._table, name)
        if name != self._operation:
            return call

        def hooked(**kwargs: Any) -> Any:
            before, self._before = self._before, lambda: None
            before()
            return call(**kwargs)

        return hooked


def test_a_create_that_lands_after_another_create_and_a_delete_is_above_both(streamed: StreamedTable) -> None:
    """The issue's scenario: A finds no EUR and is about to create it; B creates EUR and C
    deletes it before A's create lands. A's create must be the newest change of EUR."""
    clock = ticking_clock(START_MS)
    b, c = RateStore(streamed.table, clock), RateStore(streamed.table, clock)
    results: list[tuple[str, str, object]] = []

    def b_creates_and_c_deletes() -> None:
        results.append(("EUR", "put", run(b, "EUR", "put", Decimal("2"))))
        results.append(("EUR", "delete", run(c, "EUR", "delete", Decimal(0))))

    a = RateStore(CallHook(streamed.table, "put_item", b_creates_and_c_deletes), clock)
    results.append(("EUR", "put", run(a, "EUR", "put", Decimal("1"))))

    changes = assert_ordered_and_converged(streamed, results)
    assert [(change.type, change.data.get("rate")) for change in changes] == [
        ("INSERT", "2"),
        ("REMOVE", None),
        ("INSERT", "1"),
    ]
    assert RateStore(streamed.table).list()[0].rate == Decimal("1")


class Turns:
    """Lets one writer at a time make its next DynamoDB call, in the order `choose` picks."""

    def __init__(self, writers: int) -> None:
        self._writers = writers
        self._changed = threading.Condition()
        self._waiting: set[int] = set()
        self._finished: set[int] = set()
        self._turn: int | None = None
        self._calling = False

    def table(self, table: Any, writer: int) -> Any:
        turns = self

        class Gated:
            meta = table.meta

            def __getattr__(self, name: str) -> Any:
                call = getattr(table, name)

                def gated(**kwargs: Any) -> Any:
                    turns._wait_for_turn(writer)
                    try:
                        return call(**kwargs)
                    finally:
                        turns._done_calling()

                return gated

        return Gated()

    def finish(self, writer: int) -> None:
        with self._changed:
            self._finished.add(writer)
            self._changed.notify_all()

    def schedule(self, choose: Callable[[list[int]], int]) -> None:
        """Until every writer has finished, give the next call to the writer `choose` picks."""
        while True:
            with self._changed:
                settled = self._changed.wait_for(
                    lambda: not self._calling and len(self._waiting) + len(self._finished) == self._writers,
                    timeout=60,
                )
                assert settled, "a writer neither called nor finished within 60 s"
                if len(self._finished) == self._writers:
                    return
                self._turn = choose(sorted(self._waiting))
                self._calling = True
                self._changed.notify_all()

    def _wait_for_turn(self, writer: int) -> None:
        with self._changed:
            self._waiting.add(writer)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._turn == writer)
            self._turn = None
            self._waiting.discard(writer)

    def _done_calling(self) -> None:
        with self._changed:
            self._calling = False
            self._changed.notify_all()


def start_writers(
    stores: list[RateStore], plans: list[list[tuple[str, str, Decimal]]], turns: Turns | None = None
) -> tuple[list[threading.Thread], list[tuple[str, str, object]], list[BaseException]]:
    results: list[tuple[str, str, object]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write(number: int) -> None:
        try:
            for symbol, operation, rate in plans[number]:
                outcome = run(stores[number], symbol, operation, rate)
                with lock:
                    results.append((symbol, operation, outcome))
        except BaseException as error:
            errors.append(error)
        finally:
            if turns is not None:
                turns.finish(number)

    threads = [threading.Thread(target=write, args=(number,), daemon=True) for number in range(len(stores))]
    for thread in threads:
        thread.start()
    return threads, results, errors


writes = st.tuples(st.sampled_from(SYMBOLS[:2]), st.sampled_from(["put", "put", "delete"]), st.integers(1, 99))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plans=st.lists(st.lists(writes, min_size=1, max_size=4), min_size=2, max_size=4),
    skews=st.lists(st.integers(-(10**6), 10**6), min_size=4, max_size=4),
    data=st.data(),
)
def test_any_interleaving_of_writers_keeps_each_symbols_versions_increasing(
    moto_server: str, plans: list[list[tuple[str, str, int]]], skews: list[int], data: st.DataObject
) -> None:
    """Writers' DynamoDB calls interleave in any order hypothesis draws; their clocks disagree
    by up to 1,000 s either way. Each call is atomic in DynamoDB, so these are all the
    interleavings concurrent writers can produce."""
    streamed = StreamedTable(moto_server)
    try:
        turns = Turns(len(plans))
        stores = [
            RateStore(turns.table(streamed.table, number), ticking_clock(START_MS + skews[number]))
            for number in range(len(plans))
        ]
        decimal_plans = [[(s, op, Decimal(rate)) for s, op, rate in plan] for plan in plans]
        threads, results, errors = start_writers(stores, decimal_plans, turns)
        turns.schedule(lambda waiting: data.draw(st.sampled_from(waiting), label="next call by writer"))
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        assert_ordered_and_converged(streamed, results)
    finally:
        streamed.drop()


def test_eight_threads_racing_on_three_symbols_keep_versions_increasing(streamed: StreamedTable) -> None:
    """Hundreds of creates, updates and deletes at once, for real: every symbol's history in
    version order, and the last change of each symbol is what the table holds."""
    rng = random.Random(4)
    plans = [
        [
            (rng.choice(SYMBOLS), rng.choice(["put", "put", "delete"]), Decimal(rng.randint(1, 10**6)).scaleb(-3))
            for _ in range(50)
        ]
        for _ in range(8)
    ]
    stores = [RateStore(streamed.table) for _ in plans]
    threads, results, errors = start_writers(stores, plans)
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == 400
    changes = assert_ordered_and_converged(streamed, results)
    assert {change.type for change in changes} == {"INSERT", "MODIFY", "REMOVE"}
    assert sum(change.type == "INSERT" for change in changes) > len(SYMBOLS), "no symbol was re-created"


def test_eight_writers_on_one_symbol_never_repeat_or_reorder_a_revision(streamed: StreamedTable) -> None:
    """1,200 writes racing on one item. moto server alone lets two conditional writes of an item
    both apply (measured: 2-3 repeated or reordered revisions per run, and lost writes); the
    local runtime's moto (currencies_local.moto_server) makes DynamoDB writes atomic, as AWS does."""
    rng = random.Random(9)
    plans = [
        [("ONE", rng.choice(["put", "put", "delete"]), Decimal(rng.randint(1, 999))) for _ in range(150)]
        for _ in range(8)
    ]
    stores = [RateStore(boto3.session.Session().resource("dynamodb").Table(streamed.table.name)) for _ in plans]
    threads, results, errors = start_writers(stores, plans)
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors
    assert len(results) == 1200
    assert_ordered_and_converged(streamed, results)
