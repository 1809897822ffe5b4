"""Reading the dead-letter queue: holding its messages, and what each one is (the format: chalicelib.deadletter).

Three kinds arrive there: our letters (from the stream handler or the consumer, with
their reason), messages SQS itself moved after the queue's maxReceiveCount (the SNS
envelope, or a raw change, with no reason), and anything else someone sent.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batching import chunks
from chalicelib.deadletter import identifiers
from currencies_ops.console import Progress

log = logging.getLogger(__name__)
T = TypeVar("T")

MOVED_REASON = "moved by the queue's redrive policy (no reason recorded)"
UNKNOWN_REASON = "not a dead letter of this pipeline"

Source = Literal["stream", "consumer", "unknown"]

SQS_BATCH = 10
"""SQS's limit of messages per receive, send, delete and visibility batch."""
RECEIVE_WAIT_S = 1
"""Long polling asks every SQS server, so an empty answer means nothing is visible any more."""
HIDE_S = 300
"""How long letters read stay invisible to other readers; extended while the run lasts."""
EXTEND_BEFORE_S = 120
"""Letters are hidden again for HIDE_S once less than this is left."""


@dataclass(frozen=True)
class Letter:
    message_id: str
    """SQS's id of the message in the dead-letter queue."""
    source: Source
    reason: str
    payload: str | None
    """The original text; None when the letter went without it (too large) or is not ours."""
    identifiers: dict[str, Any] = field(default_factory=dict)
    """What the letter says about the original: keys, event_id, sequence, event_name, message_id, size."""

    @property
    def group(self) -> tuple[str, str]:
        return self.source, self.reason

    @property
    def example(self) -> str:
        """How an operator finds the original: its symbol and sequence, else any id the letter has."""
        keys = self.identifiers.get("keys")
        key = keys.get("symbol") if isinstance(keys, dict) else None
        symbol = key.get("S") if isinstance(key, dict) else None
        sequence = self.identifiers.get("sequence")
        if symbol is not None:
            return f"{symbol} (sequence {sequence})" if sequence is not None else str(symbol)
        for name in ("event_id", "message_id"):
            if self.identifiers.get(name) is not None:
                return f"{name} {self.identifiers[name]}"
        return f"SQS message {self.message_id}"


def parse_letter(message_id: str, body: str) -> Letter:
    """What one dead-letter-queue message is: our letter, a message SQS moved there, or something else."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        return Letter(message_id, "unknown", UNKNOWN_REASON, None)
    source, reason, payload = parsed.get("source"), parsed.get("reason"), parsed.get("payload", False)
    if source in ("stream", "consumer") and isinstance(reason, str) and (payload is None or isinstance(payload, str)):
        named = {name: value for name, value in parsed.items() if name not in ("source", "reason", "payload")}
        return Letter(message_id, source, reason, payload, named)
    # SQS moved it after maxReceiveCount receives: an SNS envelope, or a raw change (raw message delivery).
    if parsed.get("Type") == "Notification" or ("type" in parsed and "data" in parsed):
        return Letter(message_id, "consumer", MOVED_REASON, body, identifiers(body, "consumer"))
    return Letter(message_id, "unknown", UNKNOWN_REASON, None)


class QueueUnreadable(RuntimeError):
    """The dead-letter queue is not configured or could not be read; the message says which call."""


class HeldLetters:
    """The dead-letter-queue messages this run holds: hidden from other readers until deleted or released."""

    def __init__(self, sqs: Any, url: str, hide_s: int = HIDE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.sqs = sqs
        self.url = url
        self.hide_s = hide_s
        self.clock = clock
        self.handles: dict[str, str] = {}
        """Message id -> the latest receipt handle (a message received again gets a new one)."""
        self._hidden_until = 0.0

    def depth(self) -> int:
        """The queue's approximate number of visible messages, for the progress bar."""
        attributes = _read(
            "read the dead-letter queue's depth",
            lambda: self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]),
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def receive(self, limit: int, progress: Progress) -> tuple[list[Letter], bool]:
        """Read rounds of letters until a round brings nothing new or `limit` are held; True: the limit was reached."""
        letters: list[Letter] = []
        while len(self.handles) < limit:
            if not self.handles:
                self._hidden_until = self.clock() + self.hide_s
            response = _read(
                "read the dead-letter queue",
                lambda: self.sqs.receive_message(
                    QueueUrl=self.url,
                    MaxNumberOfMessages=min(SQS_BATCH, limit - len(self.handles)),
                    VisibilityTimeout=self.hide_s,
                    WaitTimeSeconds=RECEIVE_WAIT_S,
                ),
            )
            new = 0
            for message in response.get("Messages", []):
                if message["MessageId"] not in self.handles:
                    letters.append(parse_letter(message["MessageId"], message.get("Body", "")))
                    new += 1
                self.handles[message["MessageId"]] = message["ReceiptHandle"]
            progress.advance(new)
            if not new:
                break
            self.keep_hidden()
        return letters, len(self.handles) >= limit

    def keep_hidden(self) -> None:
        """Hide every held letter for another HIDE_S when the current hiding is about to end."""
        if self.clock() < self._hidden_until - EXTEND_BEFORE_S:
            return
        self._hidden_until = self.clock() + self.hide_s
        failures = self._visibility(list(self.handles), self.hide_s)
        if failures:
            log.warning("%d dead letters could not be kept hidden; another reader may see them", failures)

    def delete(self, message_ids: Sequence[str]) -> dict[str, str]:
        """Delete these letters; returns the error of each one still in the queue."""
        errors: dict[str, str] = {}
        for chunk in chunks(list(message_ids), SQS_BATCH):
            entries = [{"Id": str(n), "ReceiptHandle": self.handles[mid]} for n, mid in enumerate(chunk)]
            try:
                response = self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
            except (BotoCoreError, ClientError) as error:
                errors |= {mid: repr(error) for mid in chunk}
                continue
            failed = {int(f["Id"]): f"{f.get('Code')}: {f.get('Message')}" for f in response.get("Failed") or []}
            errors |= {chunk[n]: text for n, text in failed.items()}
        for mid in message_ids:
            if mid not in errors:
                del self.handles[mid]
        return errors

    def release(self) -> None:
        """Make every letter still held visible at once; one that fails shows again when its hiding ends."""
        failures = self._visibility(list(self.handles), 0)
        if failures:
            log.warning("%d dead letters stay hidden for up to %d s", failures, self.hide_s)
        self.handles.clear()

    def _visibility(self, message_ids: list[str], seconds: int) -> int:
        failures = 0
        for chunk in chunks(message_ids, SQS_BATCH):
            entries = [
                {"Id": str(n), "ReceiptHandle": self.handles[mid], "VisibilityTimeout": seconds}
                for n, mid in enumerate(chunk)
            ]
            try:
                response = self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            except (BotoCoreError, ClientError):
                failures += len(chunk)
                continue
            failures += len(response.get("Failed") or [])
        return failures


def _read(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except (BotoCoreError, ClientError) as error:
        raise QueueUnreadable(f"could not {what}: {error}") from error
