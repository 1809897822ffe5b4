"""Settling an SQS batch with Lambda so that exactly the failed messages come back.

With `ReportBatchItemFailures` on the event source mapping, Lambda deletes all but the
messages named in the returned `batchItemFailures`. Chalice cannot turn that setting
on, and without it Lambda ignores the return value and deletes the whole batch on
any normal return: failed messages would be lost. So unless the stage says the
mapping has it (`CURRENCIES_PARTIAL_BATCH_RESPONSE=true`), the handler deletes the
messages that succeeded itself and then raises, and Lambda returns the rest to the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.consumer.indexer import BatchReport, InboundMessage

log = logging.getLogger(__name__)
SQS_BATCH_LIMIT = 10


class BatchIncomplete(RuntimeError):
    """Some messages failed; the ones that succeeded were deleted, the rest will be retried."""


def inbound_messages(records: Sequence[dict[str, Any]]) -> list[InboundMessage]:
    """Lambda's SQS records -> the consumer's messages (with their receive counts)."""
    return [
        InboundMessage(
            record["messageId"], record["body"], int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
        )
        for record in records
    ]


def queue_url(sqs: Any, queue_arn: str) -> str:
    """arn:aws:sqs:REGION:ACCOUNT:NAME -> the queue's URL."""
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def delete_messages(sqs: Any, url: str, receipt_handles: Sequence[str]) -> list[dict[str, Any]]:
    """Delete messages in batches of ten; returns the entries SQS could not delete."""
    failures: list[dict[str, Any]] = []
    for start in range(0, len(receipt_handles), SQS_BATCH_LIMIT):
        chunk = receipt_handles[start : start + SQS_BATCH_LIMIT]
        entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(chunk)]
        failures += sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
    return failures


def settle(
    records: Sequence[dict[str, Any]], report: BatchReport, *, partial_response: bool, sqs: Callable[[], Any]
) -> dict[str, list[dict[str, str]]]:
    """The handler's return value; raises BatchIncomplete when failures must be retried without it.

    `sqs` makes the client only when handled messages must be deleted: a cold start that
    never deletes does not pay for importing boto3 (~130 ms, bench/footprint.py).
    """
    if partial_response or not report.failed_ids:
        return report.batch_item_failures()
    failed = set(report.failed_ids)
    done = [record for record in records if record["messageId"] not in failed]
    if done:
        client = sqs()
        url = queue_url(client, done[0]["eventSourceARN"])
        failures = delete_messages(client, url, [record["receiptHandle"] for record in done])
        if failures:  # they come back as duplicates, which indexing absorbs
            log.warning("could not delete some handled messages", extra={"failed": failures})
    raise BatchIncomplete(
        f"{len(failed)} of {len(records)} messages failed and will be retried; {len(done)} were deleted"
    )
