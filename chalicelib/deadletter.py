"""Dead-lettering with the reason attached, for input that no retry can fix, in one format for every source.

A message the consumer cannot parse or index, or a stream record that cannot become a
published change, is sent to the dead-letter queue and then treated as handled, so it
neither blocks its batch nor vanishes. Every letter has the same JSON body, so a redrive
can send each back where it belongs whichever stage wrote it:

    {"source": "stream" | "consumer", "reason": "...", "payload": "<original text>" | null,
     "size": <bytes of the original text>, ...identifiers}

`payload` is the stream record (Lambda's JSON) or the consumer's SQS body exactly as
received. When the letter would exceed SQS's 256 KiB, `payload` is null and the
identifiers alone say what was lost: a stream record's `keys`, `event_id`, `sequence`
and `event_name`; a consumer message's SNS `message_id` and, when its body is a change,
the change's `event_id`, `sequence` and `keys`. The `reason` and `source` message
attributes repeat what the body says, for filtering without parsing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

from chalicelib.batching import attributes_size

log = logging.getLogger(__name__)

Source = Literal["stream", "consumer"]
SQS_MAX_BYTES = 256 * 1024
"""SQS's limit for one message: body plus attributes (names, types and values)."""
MAX_REASON_CHARS = 1000
MAX_IDENTIFIER_CHARS = 4096
"""A DynamoDB key is at most 3 KiB; anything longer did not come from a table and is left out."""

_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters SQS refuses in a message body or attribute value."""

DeadLetter = Callable[[str, str], None]
"""Send (the original text, reason) to the dead-letter queue; raises DeadLetterRefused if it cannot."""


class DeadLetterRefused(RuntimeError):
    """The dead-letter queue refused the letter, with and without its payload."""


def dead_letter(sqs: Any, queue_url: str, body: str, *, reason: str, source: Source) -> None:
    """Send `body` as a letter in at most two attempts, the second without the payload.

    Transient errors (throttling, 5xx, connection) are retried by botocore within each
    attempt; the second attempt is for a refusal of the letter itself (a queue configured
    smaller than 256 KiB, a KMS key briefly unusable). Whenever a letter goes without its
    payload, the original text is logged at ERROR. Raises DeadLetterRefused when both fail.
    """
    # SQS refuses an empty attribute value, and some characters in any.
    reason = _NOT_SQS_TEXT.sub("\ufffd", reason[:MAX_REASON_CHARS]) or "no reason given"
    attributes = {
        "reason": {"DataType": "String", "StringValue": reason},
        "source": {"DataType": "String", "StringValue": source},
    }
    full, bare = _letters(body, reason, source)
    fits = len(full) <= SQS_MAX_BYTES - attributes_size(attributes)
    refusal: Exception | None = None
    for text in [full if fits else bare, bare]:
        try:
            sqs.send_message(QueueUrl=queue_url, MessageBody=text, MessageAttributes=attributes)
        except Exception as error:
            log.warning("the dead-letter queue refused a letter", extra={"source": source, "error": repr(error)})
            refusal = error
            continue
        if text is bare:
            log.error(
                "dead letter sent without its payload; the original is kept in this log line",
                extra={"source": source, "reason": reason, "payload": body},
            )
        return
    raise DeadLetterRefused(f"the dead-letter queue refused the letter: {refusal!r}") from refusal


def _letters(body: str, reason: str, source: Source) -> tuple[str, str]:
    """The letter's JSON body with and without the payload, ASCII only (SQS takes any character of it)."""
    content: dict[str, Any] = {
        "source": source,
        "reason": reason,
        "payload": None,
        "size": len(body.encode(errors="surrogatepass")),
    }
    content |= identifiers(body, source)

    def encoded(payload: str | None) -> str:
        return json.dumps(content | {"payload": payload}, separators=(",", ":"))

    return encoded(body), encoded(None)


def identifiers(body: str, source: Source) -> dict[str, Any]:
    """What identifies the original even without it (best effort: the body may be anything)."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    if source == "stream":
        stream = parsed.get("dynamodb") if isinstance(parsed.get("dynamodb"), dict) else {}
        found = {
            "keys": stream.get("Keys"),
            "event_id": parsed.get("eventID"),
            "sequence": stream.get("SequenceNumber"),
            "event_name": parsed.get("eventName"),
        }
    else:
        change = parsed
        found = {}
        if parsed.get("Type") == "Notification":  # the SNS envelope around the change
            found["message_id"] = parsed.get("MessageId")
            try:
                change = json.loads(parsed.get("Message"))
            except (TypeError, ValueError, RecursionError):
                change = {}
        if isinstance(change, dict):
            data = change.get("data")
            symbol = data.get("symbol") if isinstance(data, dict) else None
            found |= {
                "keys": {"symbol": {"S": symbol}} if isinstance(symbol, str) else None,
                "event_id": change.get("id"),
                "sequence": change.get("sequence"),
            }
    return {
        name: value
        for name, value in found.items()
        if value is not None and len(json.dumps(value, default=str)) <= MAX_IDENTIFIER_CHARS
    }
