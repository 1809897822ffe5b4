"""Engine-neutral bulk writing: bounded batches, per-item outcomes, retries within a time budget.

Both engines speak the same `_bulk` NDJSON, so batching and retrying live here once;
an engine adapter only sends bytes and returns the response's `items`.

- Batches are bounded by action count and by bytes (the engines reject huge bodies,
  and one slow giant request would eat the whole time budget).
- Items answered 429 or 5xx, and whole requests that fail in transit, are retried with
  exponential backoff and full jitter, but never past the deadline: whatever is still
  failing then is returned as `retryable` and the message goes back to the queue.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from chalicelib.batching import batches
from chalicelib.consumer.documents import Action
from chalicelib.observability import metrics
from chalicelib.sinks.base import EngineUnavailable, ItemResult, SearchEngine, outcome_of

MAX_ACTIONS_PER_REQUEST = 1000
MAX_BYTES_PER_REQUEST = 5 * 1024 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    base_delay_s: float = 0.1
    max_delay_s: float = 5.0
    max_attempts: int = 8
    request_timeout_s: float = 30.0


def encode(action: Action) -> bytes:
    """One action as its NDJSON lines: metadata, then the document.

    orjson writes compact UTF-8 JSON directly as bytes: the same JSON values as `json.dumps`
    (which escapes non-ASCII instead; a non-finite float, not JSON at all, becomes null).
    Whatever orjson refuses (a lone surrogate, a non-str key) falls back to `json`, so no
    action that used to encode fails now.
    """
    import orjson  # noqa: PLC0415 - on the first write, not at every cold start (tests/unit/test_import_cost.py)

    meta: dict[str, Any] = {"_index": action.index, "_id": action.id}
    if action.version is not None:
        meta["version"] = action.version
        meta["version_type"] = "external"
    try:
        return b"%b\n%b\n" % (orjson.dumps({action.operation: meta}), orjson.dumps(action.document))
    except TypeError:  # orjson.JSONEncodeError
        lines = (
            json.dumps({action.operation: meta}, separators=(",", ":")),
            json.dumps(action.document, separators=(",", ":")),
        )
        return ("\n".join(lines) + "\n").encode()


def parse_item(item: dict[str, Any]) -> ItemResult:
    (body,) = item.values()
    error = body.get("error")
    if error is None:
        return _without_error(body["status"])
    if isinstance(error, dict):
        return ItemResult(body["status"], error.get("type"), error.get("reason"))
    return ItemResult(body["status"], "error", str(error))


@cache
def _without_error(status: int) -> ItemResult:
    """One shared (immutable) result per status: almost every item is a plain 200/201."""
    return ItemResult(status)


class BulkWriter:
    def __init__(
        self,
        engine: SearchEngine,
        policy: RetryPolicy = RetryPolicy(),
        *,
        max_actions: int = MAX_ACTIONS_PER_REQUEST,
        max_bytes: int = MAX_BYTES_PER_REQUEST,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._engine = engine
        self._policy = policy
        self._max_actions = max_actions
        self._max_bytes = max_bytes
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        metrics.BULK_RETRIES.labels(engine.name)  # zero until the first retry, not absent

    def write(self, actions: Sequence[Action], deadline: float | None = None) -> list[ItemResult]:
        """One result per action, in order. Never raises for the engine's sake: see module doc."""
        encoded = [encode(action) for action in actions]
        results: list[ItemResult | None] = [None] * len(actions)
        pending = list(range(len(actions)))
        attempt = 0
        while pending:
            for group in batches([encoded[i] for i in pending], self._max_actions, self._max_bytes):
                positions = [pending[i] for i in group]
                for position, result in zip(positions, self._send(encoded, positions, deadline), strict=True):
                    results[position] = result
            pending = [i for i in pending if outcome_of(actions[i], results[i]) == "retryable"]  # type: ignore[arg-type]
            attempt += 1
            if not pending or not self._wait_before_retry(attempt, deadline):
                break
            metrics.BULK_RETRIES.labels(self._engine.name).inc(len(pending))
        assert all(result is not None for result in results), "every action gets a result"
        return results  # type: ignore[return-value]

    def _send(self, encoded: list[bytes], positions: list[int], deadline: float | None) -> list[ItemResult]:
        timeout = self._policy.request_timeout_s
        if deadline is not None:
            left = deadline - self._clock()
            if left <= 0:  # out of time: leave these to the queue's retry
                return [ItemResult(503, "deadline_exceeded", "no time left in this invocation")] * len(positions)
            timeout = min(timeout, left)
        started = time.perf_counter()
        try:
            items = self._engine.send_bulk(b"".join(encoded[i] for i in positions), timeout)
        except EngineUnavailable as error:
            return [ItemResult(503, "engine_unavailable", str(error))] * len(positions)
        finally:
            metrics.BULK_LATENCY.labels(self._engine.name).observe(time.perf_counter() - started)
        if len(items) != len(positions):
            reason = f"bulk answered {len(items)} items for {len(positions)} actions"
            return [ItemResult(502, "bulk_item_count_mismatch", reason)] * len(positions)
        return [parse_item(item) for item in items]

    def _wait_before_retry(self, attempt: int, deadline: float | None) -> bool:
        if attempt >= self._policy.max_attempts:
            return False
        delay = self._jitter(0, min(self._policy.max_delay_s, self._policy.base_delay_s * 2**attempt))
        # Leave room for at least one more short request after the pause.
        if deadline is not None and self._clock() + delay + 0.5 > deadline:
            return False
        self._sleep(delay)
        return True
