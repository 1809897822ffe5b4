"""Dead-lettering with the reason attached, for input that no retry can fix.

A message the consumer cannot parse, or a stream record that cannot become a change,
is sent to the dead-letter queue with `reason` and `source` attributes and then
treated as handled, so it neither blocks its batch nor vanishes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_REASON_CHARS = 1000

DeadLetter = Callable[[str, str], None]
"""Send (body, reason) to the dead-letter queue."""


def dead_letter(sqs: Any, queue_url: str, body: str, *, reason: str, source: str) -> None:
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={
            "reason": {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS]},
            "source": {"DataType": "String", "StringValue": source},
        },
    )
