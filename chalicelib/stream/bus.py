"""The SNS topic between the stream handler and the consumers: publishing and unwrapping.

Publishing uses `publish_batch` within the SNS limits: at most 10 entries, and 256 KiB
per message and per call, message attributes (names, types, values) included. An entry
SNS refuses is retried alone, not with its batch: retryable failures (`SenderFault`
false, or throttling) a few times with a short backoff within the caller's deadline;
the others are reported as refused, with SNS's code and message, for the caller to
dead-letter. Publishing stops at the first batch that still fails, so what the caller
must retry is a suffix of the changes.

A consumer may receive a change wrapped in the SNS envelope (SQS subscription, default)
or raw (raw message delivery, or a direct SNS trigger): `change_payload` and `unwrap` accept both.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batching import attributes_size, sized_batches
from chalicelib.observability import metrics
from chalicelib.stream.changes import Change, InvalidChange

log = logging.getLogger(__name__)

SNS_BATCH_LIMIT = 10
SNS_BATCH_BYTES = 256 * 1024
"""SNS's limit for one message and for a whole publish_batch call, attributes included."""
THROTTLING_CODES = frozenset({"Throttled", "Throttling", "ThrottlingException", "KMSThrottling"})
"""Entry failures SNS marks as the sender's fault that a later attempt can still get through."""
REQUEST_ROOM_S = 0.5
"""Time kept after a pause for the call that follows it."""


@dataclass(frozen=True)
class Retry:
    """How failing entries are retried: bounded attempts, exponential backoff with full jitter."""

    max_attempts: int = 4
    base_delay_s: float = 0.1
    max_delay_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[float, float], float] = random.uniform
    clock: Callable[[], float] = time.monotonic
    """The clock deadlines are read on."""

    def pause(self, attempt: int, deadline: float | None) -> bool:
        """Wait before retry number `attempt`; False when that would leave no time for the call after it."""
        delay = self.jitter(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))
        if deadline is not None and self.clock() + delay + REQUEST_ROOM_S > deadline:
            return False
        self.sleep(delay)
        return True

    def out_of_time(self, deadline: float | None) -> bool:
        return deadline is not None and self.clock() >= deadline


DEFAULT_RETRY = Retry()


@dataclass
class Publication:
    """What became of each change given to `publish`, by its position."""

    published: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    """Changes SNS will never take, with the reason: to be dead-lettered."""
    unpublished: list[int] = field(default_factory=list)
    """Changes still failing after the retries, and those after them: the caller must retry these."""
    calls: int = 0


def publish(
    sns: Any,
    topic_arn: str,
    changes: Sequence[Change],
    *,
    deadline: float | None = None,
    retry: Retry = DEFAULT_RETRY,
) -> Publication:
    """Publish `changes` in order; `deadline` (on `retry.clock`, time.monotonic) bounds the retries.

    Counts every entry in `metrics.SNS_PUBLISHES`: `published` once per change, `failed`
    once per entry in each attempt that failed (a refused entry, or a whole call that raised).
    """
    fifo = topic_arn.endswith(".fifo")
    entries = [_entry(str(position), change, fifo) for position, change in enumerate(changes)]
    sizes = [len(entry["Message"].encode()) + attributes_size(entry["MessageAttributes"]) for entry in entries]
    publication = Publication()
    sendable = []
    for position, size in enumerate(sizes):
        if size > SNS_BATCH_BYTES:
            publication.refused[position] = f"message with attributes is {size} bytes; SNS takes {SNS_BATCH_BYTES}"
        else:
            sendable.append(position)
    by_size = sized_batches([sizes[position] for position in sendable], SNS_BATCH_LIMIT, SNS_BATCH_BYTES)
    groups = [[sendable[i] for i in indices] for indices in by_size]
    for number, group in enumerate(groups):
        pending = group
        for attempt in range(retry.max_attempts):
            if (attempt and not retry.pause(attempt, deadline)) or retry.out_of_time(deadline):
                break
            pending = _attempt(sns, topic_arn, [entries[p] for p in pending], publication)
            if not pending:
                break
        if pending:
            later = [position for rest in groups[number + 1 :] for position in rest]
            publication.unpublished = sorted(pending + later)
            break
    return publication


def _attempt(sns: Any, topic_arn: str, entries: list[dict[str, Any]], publication: Publication) -> list[int]:
    """One publish_batch call: records what was published or refused; returns the positions to retry."""
    publication.calls += 1
    positions = {entry["Id"]: int(entry["Id"]) for entry in entries}
    try:
        response = sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
    except (ClientError, BotoCoreError) as error:  # the call itself: throttled, 5xx, out of reach, denied
        metrics.SNS_PUBLISHES.labels("failed").inc(len(entries))
        log.warning("publish_batch failed; retrying its entries", extra={"entries": len(entries), "error": repr(error)})
        return list(positions.values())
    retry = []
    failed = {f.get("Id"): f for f in response.get("Failed") or [] if f.get("Id") in positions}
    for entry_id, failure in failed.items():
        position = positions[entry_id]
        code, message = failure.get("Code"), failure.get("Message")
        if failure.get("SenderFault") and code not in THROTTLING_CODES:
            publication.refused[position] = f"SNS refused the change: {code}: {message}"
        else:
            retry.append(position)
    metrics.SNS_PUBLISHES.labels("failed").inc(len(failed))
    if failed:
        log.warning(
            "SNS refused entries", extra={"refused": [f"{f.get('Code')}: {f.get('Message')}" for f in failed.values()]}
        )
    published = [position for entry_id, position in positions.items() if entry_id not in failed]
    metrics.SNS_PUBLISHES.labels("published").inc(len(published))
    publication.published += published
    return retry


def _entry(entry_id: str, change: Change, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Id": entry_id,
        "Message": change.to_json(),
        # Attributes let a subscription filter by type or symbol without parsing the body.
        "MessageAttributes": {
            "type": {"DataType": "String", "StringValue": change.type},
            "symbol": {"DataType": "String", "StringValue": change.symbol},
        },
    }
    if fifo:
        entry["MessageGroupId"] = change.symbol
        entry["MessageDeduplicationId"] = change.id
    return entry


def change_payload(body: str | bytes) -> Any:
    """The change inside an SQS body, parsed: the SNS envelope's `Message`, or the body itself.

    The consumer's hot path: each text is parsed once, with orjson (several times faster
    than `json` on these small objects), and a raw change is not parsed twice. Raises
    InvalidChange when the change is not JSON (orjson also refuses NaN, lone surrogates,
    and nesting deeper than 1024, which `json` would hit as a RecursionError).
    """
    import orjson  # noqa: PLC0415 - on the first message, not at every cold start (tests/unit/test_import_cost.py)

    try:
        parsed = orjson.loads(body)
        message = notification_message(parsed)
        return parsed if message is None else orjson.loads(message)
    except orjson.JSONDecodeError as error:
        raise InvalidChange(f"message is not JSON: {error}") from None


def unwrap(body: str) -> str:
    """The change text inside an SQS body: the SNS envelope's `Message`, or the body itself."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return body
    message = notification_message(envelope)
    return body if message is None else message


def notification_message(parsed: Any) -> str | None:
    """The `Message` of a parsed SNS Notification envelope; None when `parsed` is not one (a raw change)."""
    if type(parsed) is dict and parsed.get("Type") == "Notification" and type(parsed.get("Message")) is str:
        return parsed["Message"]
    return None
