"""What a DynamoDB event source mapping does with a batch that fails, as this project configures it on AWS.

Pure logic, used by the local stream poller so that a failure behaves here as it
would on AWS (docs/design.md, "The local runtime"):

- ReportBatchItemFailures: the handler names the first record that failed; the records
  before it are done, and the mapping retries from it.
- BisectBatchOnFunctionError: a batch that fails is split in two, so one bad record
  ends up alone instead of holding back every record behind it (or being given up
  together with them).
- MaximumRetryAttempts and MaximumRecordAgeInSeconds: past either, the records are
  discarded and their description goes to the on-failure destination.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from currencies_ops.deploy.stack import StreamMappingSettings

Condition = Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]


@dataclass
class Batch:
    records: list[dict[str, Any]]
    attempts: int = 0
    """Invocations of these records that failed so far."""


@dataclass(frozen=True)
class Discarded:
    """Records given up on, and why: what the on-failure destination receives a description of."""

    records: list[dict[str, Any]]
    condition: Condition
    attempts: int


def first_failed(response: Any, records: list[dict[str, Any]]) -> int | None:
    """Where to resume after a successful invocation, as Lambda reads a stream handler's partial response.

    None: every record succeeded (no response, or no or an empty `batchItemFailures`).
    Otherwise the index of the lowest failed sequence number; anything malformed (an
    empty, missing or unknown identifier) fails the whole batch (index 0).
    """
    if not isinstance(response, dict) or not response.get("batchItemFailures"):
        return None
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return 0
    positions = {record["dynamodb"]["SequenceNumber"]: i for i, record in enumerate(records)}
    found = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in positions:
            return 0
        found.append(positions[identifier])
    return min(found)


@dataclass
class ShardCheckpoint:
    """The records of one shard read but not yet settled, in stream order, as the batches to invoke next."""

    config: StreamMappingSettings = field(default_factory=StreamMappingSettings)
    _batches: deque[Batch] = field(default_factory=deque)

    @property
    def pending(self) -> bool:
        return bool(self._batches)

    def add(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._batches.append(Batch(list(records)))

    def next_batch(self, now: datetime) -> tuple[list[dict[str, Any]], list[Discarded]]:
        """The records to invoke the handler with, after discarding those older than the maximum age."""
        discarded = []
        while self._batches:
            head = self._batches[0]
            fresh = [r for r in head.records if _age_s(r, now) <= self.config.maximum_record_age_s]
            expired = [r for r in head.records if _age_s(r, now) > self.config.maximum_record_age_s]
            if expired:
                discarded.append(Discarded(expired, "RecordAgeExceeded", head.attempts))
            if fresh:
                head.records = fresh
                return fresh, discarded
            self._batches.popleft()
        return [], discarded

    def settle(self, *, errored: bool, failed_from: int | None) -> list[Discarded]:
        """Apply one invocation's result to the batch at the head; returns what is given up on."""
        head = self._batches[0]
        if not errored and failed_from is None:
            self._batches.popleft()
            return []
        if not errored:  # a partial batch response: the records before the failed one are done
            assert failed_from is not None
            head.records = head.records[failed_from:]
        head.attempts += 1
        if head.attempts > self.config.maximum_retry_attempts:
            self._batches.popleft()
            return [Discarded(head.records, "RetryAttemptsExhausted", head.attempts)]
        if errored and self.config.bisect_batch_on_function_error and len(head.records) > 1:
            # Each half starts its own count, so bisecting isolates a bad record without giving up
            # its neighbours. On AWS, configure MaximumRetryAttempts above log2(batch size) as well.
            half = len(head.records) // 2
            self._batches.popleft()
            self._batches.extendleft([Batch(head.records[half:]), Batch(head.records[:half])])
        return []


def failure_description(discarded: Discarded, *, stream_arn: str, shard_id: str, function: str) -> dict[str, Any]:
    """The message Lambda sends to a stream mapping's on-failure destination (the records stay in the stream)."""
    records = discarded.records
    created = [_created(record) for record in records]
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "functionArn": function,
            "condition": discarded.condition,
            "approximateInvokeCount": discarded.attempts,
        },
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": min(created).isoformat(),
            "approximateArrivalOfLastRecord": max(created).isoformat(),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def _created(record: dict[str, Any]) -> datetime:
    value = record["dynamodb"].get("ApproximateCreationDateTime")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value or 0), tz=UTC)


def _age_s(record: dict[str, Any], now: datetime) -> float:
    return (now - _created(record)).total_seconds()
