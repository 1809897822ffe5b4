"""Service responses -> the event shapes Lambda hands to handlers. Pure functions.

moto's stream records lack `eventSourceARN` and boto3 returns the timestamp as a
datetime, while Lambda sends epoch seconds; SQS messages need Lambda's camelCase keys.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def dynamodb_event(records: list[dict[str, Any]], stream_arn: str, region: str) -> dict[str, Any]:
    return {"Records": [_stream_record(record, stream_arn, region) for record in records]}


def _stream_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = created.timestamp()
    stream.setdefault("StreamViewType", "NEW_AND_OLD_IMAGES")
    stream.setdefault("SizeBytes", len(json.dumps(stream, default=str)))
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", region),
        "dynamodb": stream,
        "eventSourceARN": stream_arn,
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {"Records": [_sqs_record(message, queue_arn, region) for message in messages]}


def _sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_message_ids(response: Any, message_ids: list[str]) -> set[str]:
    """Which messages to keep, as Lambda reads a partial batch response.

    Like Lambda, anything malformed (or an identifier not in the batch) fails the whole batch.
    """
    if response is None:
        return set()
    if not isinstance(response, dict):
        return set(message_ids)
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(message_ids)
    failed = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in message_ids:
            return set(message_ids)
        failed.add(identifier)
    return failed
