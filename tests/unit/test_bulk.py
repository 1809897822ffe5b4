"""BulkWriter with a scripted fake engine: batch bounds, which items are retried, and the time budget."""

from __future__ import annotations

import json
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.batching import batches
from chalicelib.consumer.documents import Action
from chalicelib.sinks.base import EngineUnavailable, ItemResult
from chalicelib.sinks.bulk import BulkWriter, RetryPolicy, encode


def action(n: int, size: int = 10) -> Action:
    return Action("create", "events", f"id-{n}", {"pad": "x" * size})


class ScriptedEngine:
    """Answers item `_id`s with the status `status_of(id, attempt)`; records every request."""

    name = "fake"

    def __init__(self, status_of: Callable[[str, int], int]) -> None:
        self._status_of = status_of
        self.requests: list[list[str]] = []
        self.attempts: dict[str, int] = {}

    def send_bulk(self, body: bytes, timeout_s: float) -> list[dict]:
        lines = [json.loads(line) for line in body.splitlines()]
        ids = [meta["create"]["_id"] for meta in lines[::2]]
        self.requests.append(ids)
        items = []
        for item_id in ids:
            attempt = self.attempts.get(item_id, 0)
            self.attempts[item_id] = attempt + 1
            status = self._status_of(item_id, attempt)
            error = None if status < 300 else {"type": f"e{status}", "reason": "scripted"}
            items.append({"create": {"_id": item_id, "status": status, "error": error}})
        return items


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def writer(engine: ScriptedEngine, clock: FakeClock, **kwargs: object) -> BulkWriter:
    return BulkWriter(
        engine,
        RetryPolicy(base_delay_s=0.1, max_delay_s=1.0, max_attempts=5),
        sleep=clock.sleep,
        clock=lambda: clock.now,
        jitter=lambda low, high: high,  # deterministic: always the longest pause
        **kwargs,  # type: ignore[arg-type]
    )


@given(
    sizes=st.lists(st.integers(1, 300), max_size=60), max_actions=st.integers(1, 10), max_bytes=st.integers(50, 2000)
)
def test_batches_respect_both_bounds_and_keep_order(sizes: list[int], max_actions: int, max_bytes: int) -> None:
    encoded = [b"x" * size for size in sizes]
    groups = batches(encoded, max_actions, max_bytes)
    assert [i for group in groups for i in group] == list(range(len(sizes)))
    for group in groups:
        assert len(group) <= max_actions
        assert len(group) == 1 or sum(sizes[i] for i in group) <= max_bytes


def test_requests_are_split_by_count() -> None:
    engine = ScriptedEngine(lambda _id, _attempt: 201)
    results = writer(engine, FakeClock(), max_actions=3).write([action(n) for n in range(7)])
    assert [len(request) for request in engine.requests] == [3, 3, 1]
    assert results == [ItemResult(201)] * 7


def test_only_retryable_items_are_sent_again() -> None:
    # id-1 is throttled once, id-2 is a mapping error (never retried), the rest succeed.
    def status(item_id: str, attempt: int) -> int:
        return {"id-1": 429 if attempt == 0 else 201, "id-2": 400}.get(item_id, 201)

    engine = ScriptedEngine(status)
    clock = FakeClock()
    results = writer(engine, clock).write([action(n) for n in range(4)])
    assert engine.requests == [["id-0", "id-1", "id-2", "id-3"], ["id-1"]]
    assert [r.status for r in results] == [201, 201, 400, 201]
    assert clock.sleeps == [0.2]


def test_backoff_grows_and_stops_after_max_attempts() -> None:
    engine = ScriptedEngine(lambda _id, _attempt: 503)
    clock = FakeClock()
    (result,) = writer(engine, clock).write([action(0)])
    assert result.status == 503
    assert len(engine.requests) == 5
    assert clock.sleeps == [0.2, 0.4, 0.8, 1.0]


def test_no_retry_outlives_the_deadline() -> None:
    engine = ScriptedEngine(lambda _id, _attempt: 429)
    clock = FakeClock()
    (result,) = writer(engine, clock).write([action(0)], deadline=1.0)
    assert result.status == 429
    assert clock.now <= 1.0
    assert len(engine.requests) == 2  # the pause before a third try would cross the deadline


def test_an_unreachable_engine_gives_retryable_results_not_an_exception() -> None:
    class Down(ScriptedEngine):
        def send_bulk(self, body: bytes, timeout_s: float) -> list[dict]:
            self.requests.append([])
            raise EngineUnavailable("connection refused")

    engine = Down(lambda _id, _attempt: 201)
    results = writer(engine, FakeClock()).write([action(0), action(1)], deadline=0.5)
    assert [r.status for r in results] == [503, 503]
    assert len(engine.requests) == 1


def test_an_oversized_action_is_sent_alone() -> None:
    engine = ScriptedEngine(lambda _id, _attempt: 201)
    big = action(1, size=5000)
    writer(engine, FakeClock(), max_bytes=len(encode(big)) - 1).write([action(0), big, action(2)])
    assert engine.requests == [["id-0"], ["id-1"], ["id-2"]]


def test_no_request_starts_after_the_deadline() -> None:
    """Many groups and a slow engine: the groups left when time runs out are not sent at all."""
    clock = FakeClock()

    class Slow(ScriptedEngine):
        def send_bulk(self, body: bytes, timeout_s: float) -> list[dict]:
            assert timeout_s <= 2.5 - clock.now
            clock.now += 1.0
            return super().send_bulk(body, timeout_s)

    engine = Slow(lambda _id, _attempt: 201)
    results = writer(engine, clock, max_actions=1).write([action(n) for n in range(5)], deadline=2.5)
    assert len(engine.requests) == 3
    assert [r.status for r in results] == [201, 201, 201, 503, 503]
