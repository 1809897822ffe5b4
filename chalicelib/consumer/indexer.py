"""The consumer core: a batch of messages -> bulk writes -> which messages must be retried.

Used by both triggers (SQS batches, or the original example's direct SNS
subscription). It never raises for one bad message: the result names the messages
to retry (`batchItemFailures`), and unparseable ones go to the dead-letter queue
with their reason when one is configured.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.consumer.documents import actions_for
from chalicelib.deadletter import DeadLetter, identifiers
from chalicelib.observability import logs, metrics
from chalicelib.observability.push import remaining_s
from chalicelib.sinks.base import FAILED_OUTCOMES, Outcome, Sink, outcome_of
from chalicelib.stream.bus import unwrap
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
    by SQS without one.
    """
    report = BatchReport()
    parsed: list[tuple[InboundMessage, Change]] = []
    for message in messages:
        try:
            parsed.append((message, Change.from_json(unwrap(message.body))))
        except (InvalidChange, RecursionError) as error:  # RecursionError: absurdly nested JSON
            change_id = identifiers(message.body, "consumer").get("event_id")  # best effort: it may have none
            with logs.about_change(change_id if isinstance(change_id, str) else None):
                log.error("invalid message", extra={"message_id": message.message_id, "reason": str(error)})
                _fail(report, message, f"invalid message: {error}", dead_letter, give_up=True)

    received_at = clock()
    stamp = iso_utc(received_at)
    per_message = [
        actions_for(change, events_index=events_index, rates_index=rates_index, ingested_at=stamp)
        for _, change in parsed
    ]
    actions = [action for group in per_message for action in group]
    try:
        results = sink.write(actions, deadline)
    except Exception as error:  # the engine refused the whole request (e.g. 401, 403)
        log.error(
            "bulk request failed; the batch will be retried",
            extra={"error": repr(error), "change_ids": [change.id for _, change in parsed]},
        )
        for message, change in parsed:
            last = _last_receive(message, max_receives)
            with logs.about_change(change.id):
                _fail(report, message, f"bulk request failed: {error!r}", dead_letter, give_up=last)
        return report
    indexed_at = clock()

    position = 0
    for (message, change), group in zip(parsed, per_message, strict=True):
        item_results = results[position : position + len(group)]
        position += len(group)
        outcomes: list[Outcome] = [outcome_of(a, r) for a, r in zip(group, item_results, strict=True)]
        errors = []
        for action, result, outcome in zip(group, item_results, outcomes, strict=True):
            if outcome in FAILED_OUTCOMES:
                metrics.BULK_ITEM_ERRORS.labels(sink.engine, result.error_type or str(result.status)).inc()
                errors.append(f"{action.index}: {result.status} {result.error_type}: {result.reason}")
        if errors:
            with logs.about_change(change.id):
                log.warning("indexing failed", extra={"message_id": message.message_id, "errors": errors})
                last = _last_receive(message, max_receives)
                _fail(report, message, "; ".join(errors), dead_letter, give_up=last)
            continue
        outcome = _message_outcome(outcomes)
        _record(report, message, outcome)
        if log.isEnabledFor(logging.DEBUG):  # per change: DEBUG only, and not even built at INFO
            log.debug(
                "change indexed",
                extra={"change_id": change.id, "outcome": outcome, "symbol": change.symbol, "version": change.version},
            )
        if outcomes[0] == "written":
            _observe_lags(change, received_at, indexed_at)
        _observe_rate(change, rate_written=outcomes[1] == "written")
    return report


def _message_outcome(outcomes: list[Outcome]) -> str:
    """Events-index outcome first (duplicate), then rates-index outcome (stale)."""
    event_outcome, rate_outcome = outcomes
    if event_outcome == "duplicate":
        return "duplicate"
    if rate_outcome == "stale":
        return "stale"
    return "indexed"


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
    report.outcomes[outcome] += 1
    metrics.CONSUMER_MESSAGES.labels(outcome).inc()
    if outcome == "failed":
        report.failed_ids.append(message.message_id)


def _observe_lags(change: Change, received_at: datetime, indexed_at: datetime) -> None:
    """Where a change's time went, hop by hop, once per change (on its first indexing)."""
    occurred_at = datetime.fromisoformat(change.occurred_at)
    published_at = datetime.fromisoformat(change.published_at)
    hops = {
        "stream_to_consumer": received_at - published_at,
        "consumer_to_indexed": indexed_at - received_at,
    }
    for stage, took in hops.items():
        metrics.STAGE_LAG.labels(stage).observe(max(took.total_seconds(), 0.0))
    metrics.END_TO_END_LAG.observe(max((indexed_at - occurred_at).total_seconds(), 0.0))


def _observe_rate(change: Change, *, rate_written: bool) -> None:
    if not rate_written:
        return
    if change.type != "REMOVE":
        metrics.CURRENCY_RATE.labels(change.symbol).set(float(change.data["rate"]))
        return
    with contextlib.suppress(KeyError):  # this process never saw the symbol's rate
        metrics.CURRENCY_RATE.remove(change.symbol)
