"""Reading the dead-letter queue: what each message in it is (the letter format: chalicelib.deadletter).

Three kinds arrive there: our letters (from the stream handler or the consumer, with
their reason), messages SQS itself moved after the queue's maxReceiveCount (the SNS
envelope, or a raw change, with no reason), and anything else someone sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from chalicelib.deadletter import identifiers

MOVED_REASON = "moved by the queue's redrive policy (no reason recorded)"
UNKNOWN_REASON = "not a dead letter of this pipeline"

Source = Literal["stream", "consumer", "unknown"]


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
