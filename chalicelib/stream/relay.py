"""The stream handler core: DynamoDB stream records -> change messages on the topic.

No record can hold back its shard. A record that cannot become a change, or whose
change SNS refuses for good, is dead-lettered with its reason (`deadletter`); if the
dead-letter queue refuses it too (or none is configured), the whole record is logged
at ERROR and counted as `dead_letter_failed`, and the batch goes on. Entries SNS fails
to take for a while are retried alone within the invocation (`bus.publish`); if some
still fail, the report names the first record not published, so that the event source
resumes there (`ReportBatchItemFailures`) and the records before it are not published
again. The consumer is idempotent, so the few republished changes after it are
harmless duplicates.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalicelib.deadletter import DeadLetter
from chalicelib.observability import logs, metrics
from chalicelib.ordering import advances
from chalicelib.stream.bus import DEFAULT_RETRY, Retry, publish
from chalicelib.stream.changes import CHANGE_TYPES, Change, InvalidChange, change_from_record

log = logging.getLogger(__name__)


class Unpublished(RuntimeError):
    """Some changes are still not on the topic; without partial batch responses the whole batch is retried."""


@dataclass
class RelayReport:
    counts: Counter[str] = field(default_factory=Counter)
    retry_from: str | None = None
    """SequenceNumber of the first record not published (None: the batch is done)."""

    def batch_response(self, *, partial: bool) -> dict[str, list[dict[str, str]]]:
        """What the handler returns: the first record to retry if the mapping reads partial responses.

        Without `partial` (a mapping without ReportBatchItemFailures ignores the answer)
        an unfinished batch raises, so that the event source retries all of it.
        """
        if self.retry_from is None:
            return {"batchItemFailures": []}
        if not partial:
            raise Unpublished(f"changes from sequence number {self.retry_from} on are not published")
        return {"batchItemFailures": [{"itemIdentifier": self.retry_from}]}


def relay(
    records: Sequence[dict[str, Any]],
    *,
    sns: Any,
    topic_arn: str,
    dead_letter: DeadLetter | None = None,
    deadline: float | None = None,
    retry: Retry = DEFAULT_RETRY,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> RelayReport:
    """Convert and publish a batch of stream records; `deadline` (time.monotonic) bounds SNS retries."""
    published_at = clock()
    converted: list[tuple[int, Change]] = []
    rejected: dict[int, str] = {}
    for position, record in enumerate(records):
        try:
            converted.append((position, change_from_record(record, published_at)))
        except InvalidChange as error:
            rejected[position] = str(error)
    publication = publish(sns, topic_arn, [change for _, change in converted], deadline=deadline, retry=retry)
    for index, reason in publication.refused.items():
        rejected[converted[index][0]] = reason

    report = RelayReport()
    cut = len(records)
    if publication.unpublished:
        cut, first = converted[publication.unpublished[0]]
        report.retry_from = first.sequence
        for index in publication.unpublished:
            change = converted[index][1]
            _count(report, change.type, "failed")
            log.warning(
                "change not published; the event source will retry it",
                extra={"change_id": change.id, "symbol": change.symbol, "sequence": change.sequence},
            )
    # Records from the cut on come back in the retry: dead-lettering them now would do it twice.
    for position in sorted(p for p in rejected if p < cut):
        _count(report, _event_type(records[position]), _dead_letter(records[position], rejected[position], dead_letter))
    for index in publication.published:
        _published(report, converted[index][1], published_at)
    return report


def _dead_letter(record: dict[str, Any], reason: str, dead_letter: DeadLetter | None) -> str:
    """Dead-letter one record and return the outcome; never raises, so the record cannot block its shard."""
    text = json.dumps(record, default=str, separators=(",", ":"))
    stream = record.get("dynamodb") if isinstance(record.get("dynamodb"), dict) else {}
    # `change_id`: the record's eventID, which the change would have carried as its id.
    where = {"reason": reason, "change_id": str(record.get("eventID")), "sequence": str(stream.get("SequenceNumber"))}
    if dead_letter is None:
        refusal = "no dead-letter queue is configured"
    else:
        try:
            with logs.about_change(where["change_id"]):
                dead_letter(text, reason)
        except Exception as error:
            refusal = repr(error)
        else:
            log.error("stream record dead-lettered", extra=where)
            return "dead_lettered"
    log.error(
        "stream record neither published nor dead-lettered; this log line is all that is left of it",
        extra={**where, "refusal": refusal, "record": text},
    )
    return "dead_letter_failed"


def _published(report: RelayReport, change: Change, published_at: datetime) -> None:
    _count(report, change.type, "published")
    if log.isEnabledFor(logging.DEBUG):  # per change: DEBUG only, and not even built at INFO
        log.debug(
            "change published",
            extra={"change_id": change.id, "symbol": change.symbol, "type": change.type, "version": change.version},
        )
    waited = published_at - datetime.fromisoformat(change.occurred_at)
    metrics.STAGE_LAG.labels("table_to_stream").observe(max(waited.total_seconds(), 0.0))
    if change.type == "MODIFY" and not advances(change.old, change.version):
        # Published all the same: the history keeps it. The current state cannot take it.
        metrics.STREAM_RECORDS.labels(change.type, "unordered").inc()
        log.error(
            "a write did not advance the item's version; every writer must ADD revision :1",
            extra={"change_id": change.id, "symbol": change.symbol, "version": change.version},
        )


def _count(report: RelayReport, event_type: str, outcome: str) -> None:
    report.counts[outcome] += 1
    metrics.STREAM_RECORDS.labels(event_type, outcome).inc()


def _event_type(record: dict[str, Any]) -> str:
    """The record's eventName as a metric label; a foreign record's is not let into the label's values."""
    name = record.get("eventName")
    return name if name in CHANGE_TYPES else "unknown"
