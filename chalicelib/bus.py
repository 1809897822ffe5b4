"""The SNS topic between the stream handler and the consumers: publishing and unwrapping.

Publishing uses `publish_batch` (at most 10 entries and 256 KiB per call, the SNS limits). A consumer may
receive a change wrapped in the SNS envelope (SQS subscription, default) or raw
(raw message delivery, or a direct SNS trigger): `unwrap` accepts both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chalicelib.batching import batches
from chalicelib.changes import Change

SNS_BATCH_LIMIT = 10
SNS_BATCH_BYTES = 256 * 1024


class PublishError(RuntimeError):
    """Some changes were not accepted by SNS; the whole stream batch must be retried."""


def publish(sns: Any, topic_arn: str, changes: Sequence[Change]) -> int:
    """Publish every change or raise; returns the number of SNS calls made."""
    fifo = topic_arn.endswith(".fifo")
    bodies = [change.to_json() for change in changes]
    calls = 0
    for group in batches([body.encode() for body in bodies], SNS_BATCH_LIMIT, SNS_BATCH_BYTES):
        entries = [_entry(str(n), changes[i], bodies[i], fifo) for n, i in enumerate(group)]
        response = sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
        calls += 1
        failed = response.get("Failed") or []
        if failed:
            reasons = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            raise PublishError(f"{len(failed)} of {len(group)} changes not published: {reasons}")
    return calls


def _entry(entry_id: str, change: Change, body: str, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Id": entry_id,
        "Message": body,
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


def unwrap(body: str) -> str:
    """The change text inside an SQS body: the SNS envelope's `Message`, or the body itself."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return body
    if (
        isinstance(envelope, dict)
        and envelope.get("Type") == "Notification"
        and isinstance(envelope.get("Message"), str)
    ):
        return envelope["Message"]
    return body
