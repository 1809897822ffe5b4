"""The consumer core: a batch of messages -> bulk writes -> which messages must be retried.

Used by both triggers (SQS batches, or the original example's direct SNS
subscription). It never raises for one bad message: the result names the messages
to retry (`batchItemFailures`), and unparseable ones go to the dead-letter queue
with their reason when one is configured.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.consumer.documents import Action, actions_for
from chalicelib.deadletter import DeadLetter, identifiers
from chalicelib.observability import logs, metrics
from chalicelib.observability.push import remaining_s
from chalicelib.sinks.base import FAILED_OUTCOMES, ItemResult, Outcome, Sink, outcome_of
from chalicelib.stream.bus import change_payload
from chalicelib.stream.changes import Change, InvalidChange, iso_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InboundMessage:
    message_id: str
    body: str
    receive_count: int = 1
    """SQS's ApproximateReceiveCount: how many times this message has been handed out."""


@dataclass
class BatchReport:
    failed_ids: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def batch_item_failures(self) -> dict[str, list[dict[str, str]]]:
        """The partial batch response Lambda expects from an SQS handler."""
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self.failed_ids]}


# Time kept back from the Lambda's remaining time to report the batch result: this
# much, or a fifth of what remains when that is less (a 3 s function still gets 2.4 s).
DEADLINE_MARGIN_S = 3.0


def deadline_of(context: Any) -> float | None:
    """A `time.monotonic()` deadline from a Lambda context (None without one: no bound)."""
    left = remaining_s(context)
    if left is None:
        return None
    return time.monotonic() + left - min(DEADLINE_MARGIN_S, left / 5)


def consume(
    messages: Sequence[InboundMessage],
    sink: Sink,
    *,
    events_index: str,
    rates_index: str,
    dead_letter: DeadLetter | None = None,
    max_receives: int | None = None,
    deadline: float | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchReport:
    """Index a batch; `deadline` (time.monotonic) bounds the sink's retries.

    A message that fails on its last receive (`max_receives`, the queue's redrive
    limit) is dead-lettered here, with its reason, instead of being moved there
    by SQS without one. Metrics are counted once per batch (per outcome, per symbol),
    not per message: the same totals, for a fraction of the cost.
    """
    batch = _Batch(sink, events_index, rates_index, _Failing(dead_letter, max_receives), deadline, clock)
    try:
        with _cyclic_gc_paused():
            parsed, actions = batch.prepare(messages)
            batch.settle(parsed, actions, batch.write(actions))
    finally:
        for outcome, count in batch.report.outcomes.items():
            metrics.CONSUMER_MESSAGES.labels(outcome).inc(count)
        batch.observe()
    return batch.report


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cycle collection while a batch is handled: at batch 1000 it took ~10 of ~55 µs per event.

    A batch allocates some ten objects per change (parsed JSON, documents, the engine's
    answer) and no cycles, so reference counting frees them all; the collector only kept
    re-scanning them (and everything older) as they piled up. It runs again afterwards,
    and catches anything cyclic the batch did leave (an exception's traceback, say).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_change(body: str) -> Change:
    """An SQS body (SNS envelope or raw change) -> a checked Change; raises InvalidChange."""
    return Change.from_payload(change_payload(body))


@dataclass(frozen=True)
class _Failing:
    """What becomes of a failing message: dead-lettered when retrying is pointless, else retried."""

    dead_letter: DeadLetter | None
    max_receives: int | None

    def fail(self, report: BatchReport, message: InboundMessage, reason: str, *, give_up: bool) -> None:
        _fail(report, message, reason, self.dead_letter, give_up=give_up)

    def last_receive(self, message: InboundMessage) -> bool:
        return _last_receive(message, self.max_receives)


@dataclass(frozen=True)
class _Written:
    """A write's results (or why the whole request failed) and when it ended."""

    results: list[ItemResult] | None
    error: Exception | None
    indexed_at: datetime


class _Batch:
    """One consume() call: parse and build (prepare), send (write), per-message outcomes (settle)."""

    def __init__(  # noqa: PLR0917 - consume's arguments, passed on
        self,
        sink: Sink,
        events_index: str,
        rates_index: str,
        failing: _Failing,
        deadline: float | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.report = BatchReport()
        self._sink = sink
        self._events_index, self._rates_index = events_index, rates_index
        self._failing = failing
        self._deadline = deadline
        self._clock = clock
        self._received_at = clock()
        self._stamp = iso_utc(self._received_at)
        self._latest_rates: dict[str, str | None] = {}  # symbol -> last rate written in this batch (None: removed)
        self._lags = _Lags(self._received_at)

    def prepare(self, messages: Sequence[InboundMessage]) -> tuple[list[tuple[InboundMessage, Change]], list[Action]]:
        """Parse the messages (dead-lettering or failing the invalid ones) and build two actions per change."""
        parsed: list[tuple[InboundMessage, Change]] = []
        actions: list[Action] = []
        for message in messages:
            try:
                change = parse_change(message.body)
            except (InvalidChange, RecursionError) as error:  # RecursionError: absurdly nested JSON
                change_id = identifiers(message.body, "consumer").get("event_id")  # best effort: it may have none
                with logs.about_change(change_id if isinstance(change_id, str) else None):
                    log.error("invalid message", extra={"message_id": message.message_id, "reason": str(error)})
                    self._failing.fail(self.report, message, f"invalid message: {error}", give_up=True)
                continue
            parsed.append((message, change))
            # Its event, then its rate.
            actions += actions_for(change, events_index=self._events_index, rates_index=self._rates_index,
                                   ingested_at=self._stamp)  # fmt: skip
        return parsed, actions

    def write(self, actions: list[Action]) -> _Written:
        try:
            results = self._sink.write(actions, self._deadline)
        except Exception as error:  # the engine refused the whole request (e.g. 401, 403)
            return _Written(None, error, self._clock())
        return _Written(results, None, self._clock())

    def settle(self, parsed: list[tuple[InboundMessage, Change]], actions: list[Action], written: _Written) -> None:
        """Each message's outcome from its two items' results."""
        report, failing, results = self.report, self._failing, written.results
        if results is None:
            log.error(
                "bulk request failed; the batch will be retried",
                extra={"error": repr(written.error), "change_ids": [change.id for _, change in parsed]},
            )
            for message, change in parsed:
                with logs.about_change(change.id):
                    reason = f"bulk request failed: {written.error!r}"
                    failing.fail(report, message, reason, give_up=failing.last_receive(message))
            return
        self._lags.indexed_at(written.indexed_at)
        debug = log.isEnabledFor(logging.DEBUG)  # per change: DEBUG only, and not even built at INFO
        for position, (message, change) in enumerate(parsed):
            event_action, rate_action = actions[2 * position], actions[2 * position + 1]
            event_result, rate_result = results[2 * position], results[2 * position + 1]
            event_outcome, rate_outcome = outcome_of(event_action, event_result), outcome_of(rate_action, rate_result)
            if event_outcome in FAILED_OUTCOMES or rate_outcome in FAILED_OUTCOMES:
                items = [(event_action, event_result, event_outcome), (rate_action, rate_result, rate_outcome)]
                _item_failed(report, message, change, engine=self._sink.engine, failing=failing, items=items)
                continue
            # Events-index outcome first (duplicate), then rates-index outcome (stale).
            outcome = "duplicate" if event_outcome == "duplicate" else "stale" if rate_outcome == "stale" else "indexed"
            report.outcomes[outcome] += 1
            if debug:
                log.debug(
                    "change indexed",
                    extra={"change_id": change.id, "outcome": outcome, "symbol": change.symbol,
                           "version": change.version},
                )  # fmt: skip
            if event_outcome == "written":  # once per change: on its first indexing
                self._lags.observe(change)
            if rate_outcome == "written":  # external versions: the last written in batch order is the newest
                self._latest_rates[change.symbol] = None if change.type == "REMOVE" else change.data["rate"]

    def observe(self) -> None:
        """The lag histograms, and the rate gauge once per symbol: the batch's last written rate (or removal)."""
        self._lags.flush()
        for symbol, rate in self._latest_rates.items():
            if rate is not None:
                metrics.CURRENCY_RATE.labels(symbol).set(float(rate))
                continue
            with contextlib.suppress(KeyError):  # this process never saw the symbol's rate
                metrics.CURRENCY_RATE.remove(symbol)


def _item_failed(
    report: BatchReport,
    message: InboundMessage,
    change: Change,
    *,
    engine: str,
    failing: _Failing,
    items: list[tuple[Action, ItemResult, Outcome]],
) -> None:
    errors = []
    for action, result, outcome in items:
        if outcome in FAILED_OUTCOMES:
            metrics.BULK_ITEM_ERRORS.labels(engine, result.error_type or str(result.status)).inc()
            errors.append(f"{action.index}: {result.status} {result.error_type}: {result.reason}")
    with logs.about_change(change.id):
        log.warning("indexing failed", extra={"message_id": message.message_id, "errors": errors})
        failing.fail(report, message, "; ".join(errors), give_up=failing.last_receive(message))


def _last_receive(message: InboundMessage, max_receives: int | None) -> bool:
    return max_receives is not None and message.receive_count >= max_receives


def _fail(
    report: BatchReport, message: InboundMessage, reason: str, dead_letter: DeadLetter | None, *, give_up: bool
) -> None:
    """Dead-letter the message with its reason when retrying is pointless, else have it retried.

    Callers log within `logs.about_change`, so these lines carry the change's id.
    """
    if give_up and dead_letter is not None:
        try:
            dead_letter(message.body, reason)
        except Exception as error:
            log.error(
                "dead-lettering failed; the message will be retried",
                extra={"message_id": message.message_id, "error": repr(error)},
            )
        else:
            log.error("message dead-lettered", extra={"message_id": message.message_id, "reason": reason[:1000]})
            _record(report, message, "dead_lettered")
            return
    _record(report, message, "failed")


def _record(report: BatchReport, message: InboundMessage, outcome: str) -> None:
    """Counted in the report; `consume` adds the report's counts to the metrics once per batch."""
    report.outcomes[outcome] += 1
    if outcome == "failed":
        report.failed_ids.append(message.message_id)


class _Lags:
    """Where each change's time went, hop by hop: gathered per change, put in the histograms once per batch."""

    def __init__(self, received_at: datetime) -> None:
        self._received_s = received_at.timestamp()
        self._indexed_s = self._received_s
        self._stream_to_consumer: list[float] = []
        self._consumer_to_indexed: list[float] = []
        self._end_to_end: list[float] = []

    def indexed_at(self, moment: datetime) -> None:
        """When the bulk request of the changes observed next ended."""
        self._indexed_s = moment.timestamp()

    def observe(self, change: Change) -> None:
        published_s = datetime.fromisoformat(change.published_at).timestamp()
        occurred_s = datetime.fromisoformat(change.occurred_at).timestamp()
        self._stream_to_consumer.append(max(self._received_s - published_s, 0.0))
        self._consumer_to_indexed.append(max(self._indexed_s - self._received_s, 0.0))
        self._end_to_end.append(max(self._indexed_s - occurred_s, 0.0))

    def flush(self) -> None:
        metrics.observe_all(metrics.STAGE_LAG.labels("stream_to_consumer"), self._stream_to_consumer)
        metrics.observe_all(metrics.STAGE_LAG.labels("consumer_to_indexed"), self._consumer_to_indexed)
        metrics.observe_all(metrics.END_TO_END_LAG, self._end_to_end)
        self._stream_to_consumer, self._consumer_to_indexed, self._end_to_end = [], [], []
