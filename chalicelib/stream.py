"""The stream handler core: DynamoDB stream records -> change messages on the topic.

A record that cannot become a change is dead-lettered with its reason (or, with no
dead-letter queue configured, fails the batch so it is retried and seen). A publish
failure raises, so the event source retries the whole batch: the consumer is
idempotent, so the republished changes are harmless duplicates.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from chalicelib.bus import PublishError, publish
from chalicelib.changes import Change, InvalidChange, change_from_record
from chalicelib.deadletter import DeadLetter
from chalicelib.observability import metrics
from chalicelib.ordering import advances

log = logging.getLogger(__name__)


class UnconvertibleRecord(RuntimeError):
    """A record could not be converted and there is no dead-letter queue to keep it in."""


def relay(
    records: Sequence[dict[str, Any]],
    *,
    sns: Any,
    topic_arn: str,
    dead_letter: DeadLetter | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Counter[str]:
    """Convert and publish a batch of stream records; returns counts by outcome."""
    published_at = clock()
    changes: list[Change] = []
    counts: Counter[str] = Counter()
    for record in records:
        event_type = str(record.get("eventName", "unknown"))
        try:
            changes.append(change_from_record(record, published_at))
        except InvalidChange as error:
            log.error("unconvertible stream record", extra={"reason": str(error), "record": record})
            if dead_letter is None:
                metrics.STREAM_RECORDS.labels(event_type, "failed").inc()
                raise UnconvertibleRecord(str(error)) from error
            dead_letter(json.dumps(record, default=str), str(error))
            metrics.STREAM_RECORDS.labels(event_type, "dead_lettered").inc()
            counts["dead_lettered"] += 1
    try:
        publish(sns, topic_arn, changes)
    except PublishError:
        metrics.SNS_PUBLISHES.labels("failed").inc(len(changes))
        raise
    metrics.SNS_PUBLISHES.labels("published").inc(len(changes))
    for change in changes:
        metrics.STREAM_RECORDS.labels(change.type, "published").inc()
        waited = published_at - datetime.fromisoformat(change.occurred_at)
        metrics.STAGE_LAG.labels("table_to_stream").observe(max(waited.total_seconds(), 0.0))
        if change.type == "MODIFY" and not advances(change.old, change.version):
            # Still published: the history keeps it. The current state cannot take it.
            metrics.STREAM_RECORDS.labels(change.type, "unordered").inc()
            log.error(
                "a write did not advance the item's version; every writer must ADD revision :1",
                extra={"change_id": change.id, "symbol": change.symbol, "version": change.version},
            )
    counts["published"] += len(changes)
    return counts
