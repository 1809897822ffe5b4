"""Getting a Lambda container's metrics out: a push to the Pushgateway after every invocation.

The traps, and how each is avoided (docs/design.md, "Metrics out of Lambda"):
- Double counting: each container owns one group (`function`, `instance` = a random
  container id) and replaces it (PUT) with its cumulative counters, so pushing again
  restates the same totals instead of adding them.
- Loss when a container goes away: its group stays; the janitor later folds it into
  the function's `retired` group before deleting it, so totals never shrink.
- The janitor racing a container that comes back: once the gateway may not have heard
  from an identity for `rotate_after_s` (a third of the janitor's idle bound), the
  container takes a new identity for what the gateway has not confirmed, so a group
  the janitor may retire is never pushed to again.
- A slow or dead gateway: every push has a timeout within the Lambda's remaining
  time; a failure is logged and counted, never raised into the handler.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from chalicelib.observability import metrics
from chalicelib.observability.pushgateway import Pushgateway

log = logging.getLogger(__name__)
T = TypeVar("T")

PUSH_TIMEOUT_S = 1.0
# Time kept back for Lambda to return the handler's result after the push.
RESERVE_S = 0.3
# Per-process values that must not be pushed from a container: each container's rate
# gauge disagrees with the others', and queue depths are pushed by the janitor alone.
NOT_PUSHED = frozenset({"currencies_currency_rate", "currencies_queue_messages"})
_CUMULATIVE_SUFFIXES = ("_total", "_bucket", "_count", "_sum")

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def cumulative_values(registry: CollectorRegistry) -> dict[SampleKey, float]:
    """Every counter and histogram sample's value, by sample name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        if family.type in ("counter", "histogram")
        for sample in family.samples
        if sample.name.endswith(_CUMULATIVE_SUFFIXES)
    }


class SinceBaseline(Collector):
    """A registry's families less what an earlier identity already pushed, without per-process gauges."""

    def __init__(self, source: CollectorRegistry, baseline: dict[SampleKey, float]) -> None:
        self._source = source
        self._baseline = baseline

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            if family.name in NOT_PUSHED:
                continue
            copy = Metric(family.name, family.documentation, family.type, family.unit)
            copy.samples = [
                sample._replace(
                    value=sample.value - self._baseline.get((sample.name, tuple(sorted(sample.labels.items()))), 0.0)
                )
                for sample in family.samples
            ]
            yield copy


class MetricsPusher:
    """One per container: pushes the container's registry under its own group."""

    def __init__(
        self,
        gateway: Pushgateway,
        function: str,
        *,
        rotate_after_s: float,
        registry: CollectorRegistry = metrics.REGISTRY,
        timeout_s: float = PUSH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        new_instance: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self._gateway = gateway
        self.function = function
        self._rotate_after_s = rotate_after_s
        self._registry = registry
        self._timeout_s = timeout_s
        self._clock = clock
        self._new_instance = new_instance
        self.instance = new_instance()
        self._baseline: dict[SampleKey, float] = {}
        self._pushed: dict[SampleKey, float] = {}
        """Cumulative values as of the last push the gateway confirmed (under any identity)."""
        self._last_pushed_at: float | None = None
        self._first_attempt_at: float | None = None

    @property
    def key(self) -> dict[str, str]:
        return {"function": self.function, "instance": self.instance}

    def start_invocation(self) -> None:
        """Rotate before the invocation counts anything, if the identity went stale while idle."""
        self._rotate_if_stale()

    def _rotate_if_stale(self) -> None:
        """Take a new identity once the gateway may not have heard from this one for `rotate_after_s`.

        An identity is never pushed to again after that, so the janitor (which waits three
        times as long) can never retire a group that is still in use. The new identity
        carries everything not confirmed in the gateway: counts since the last successful push.
        """
        anchor = self._last_pushed_at if self._last_pushed_at is not None else self._first_attempt_at
        if anchor is None or self._clock() - anchor <= self._rotate_after_s:
            return
        log.info("metrics identity rotated after idling", extra={"old_instance": self.instance})
        self._baseline = self._pushed
        self.instance = self._new_instance()
        self._last_pushed_at = None
        self._first_attempt_at = None

    def push(self, budget_s: float | None) -> bool:
        """Replace this container's group; False (logged and counted) when the gateway did not take it."""
        self._rotate_if_stale()  # also here: an invocation can outlast the bound
        timeout_s = self._timeout_s if budget_s is None else min(self._timeout_s, budget_s - RESERVE_S)
        values = cumulative_values(self._registry)
        if self._first_attempt_at is None:
            self._first_attempt_at = self._clock()
        if timeout_s <= 0:
            return self._failed("no time left in the invocation to push metrics")
        view = CollectorRegistry(auto_describe=False)
        view.register(SinceBaseline(self._registry, self._baseline))
        try:
            self._gateway.replace(self.key, view, timeout_s)
        except Exception as error:
            return self._failed(repr(error))
        metrics.METRICS_PUSHES.labels("pushed").inc()
        self._pushed = values
        self._last_pushed_at = self._clock()
        return True

    def _failed(self, reason: str) -> bool:
        metrics.METRICS_PUSHES.labels("failed").inc()
        log.warning("metrics push failed; the next push carries these counts", extra={"reason": reason})
        return False


def remaining_s(context: Any) -> float | None:
    """Seconds left in a Lambda invocation (None outside Lambda)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return None if remaining is None else remaining() / 1000


def around_invocation(pusher: MetricsPusher | None, context: Any, handle: Callable[[], T]) -> T:
    """Run a handler, then push its container's metrics, whatever the handler did."""
    if pusher is None:
        return handle()
    pusher.start_invocation()
    try:
        return handle()
    finally:
        pusher.push(remaining_s(context))
