"""AWS's message size limits, enforced on the local runtime's boto3 calls because moto does not.

moto accepts SNS and SQS messages larger than AWS does; without this, a message that
fails on every retry in AWS would sail through locally. The check runs in botocore's
`before-parameter-build` event, on the call's own parameters, and raises the
ClientError (with AWS's error code) that AWS would answer with; nothing is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
from botocore.exceptions import ClientError

SNS_MAX_BYTES = 256 * 1024
"""One SNS message with its attributes, and one whole publish_batch call."""
SQS_DEFAULT_MAX_BYTES = 256 * 1024


def attributes_bytes(attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    """What SNS and SQS count for message attributes: each name, data type and value."""
    total = 0
    for name, attribute in (attributes or {}).items():
        value = attribute.get("StringValue") or attribute.get("BinaryValue") or b""
        total += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        total += len(value) if isinstance(value, bytes) else len(str(value).encode())
    return total


def message_bytes(body: str, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    return len(body.encode()) + attributes_bytes(attributes)


def _refuse(operation: str, code: str, message: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation
    )


def check_sns(params: Mapping[str, Any], operation: str) -> ClientError | None:
    if operation == "Publish":
        size = message_bytes(params.get("Message", ""), params.get("MessageAttributes"))
        if size > SNS_MAX_BYTES:
            return _refuse(operation, "InvalidParameter", f"Invalid parameter: Message too long ({size} bytes)")
        return None
    entries = params.get("PublishBatchRequestEntries", [])
    sizes = [message_bytes(e.get("Message", ""), e.get("MessageAttributes")) for e in entries]
    if sum(sizes) > SNS_MAX_BYTES:
        return _refuse(
            operation,
            "BatchRequestTooLong",
            f"The length of all the messages put together is more than the limit ({sum(sizes)} bytes)",
        )
    return None


def check_sqs(params: Mapping[str, Any], operation: str, limit: int) -> ClientError | None:
    if operation == "SendMessage":
        size = message_bytes(params.get("MessageBody", ""), params.get("MessageAttributes"))
        if size > limit:
            return _refuse(
                operation, "InvalidParameterValue", f"One or more parameters are invalid: message of {size} bytes"
            )
        return None
    sizes = [message_bytes(e.get("MessageBody", ""), e.get("MessageAttributes")) for e in params.get("Entries", [])]
    if sum(sizes) > limit:
        return _refuse(operation, "AWS.SimpleQueueService.BatchRequestTooLong", f"Batch requests of {sum(sizes)} bytes")
    return None


def enforce(session: boto3.Session | None = None) -> None:
    """Check every SNS publish and SQS send of clients made from `session` (the default one if None)."""
    if session is None:
        session = boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION
    assert session is not None
    events = session.events

    def sns(params: Mapping[str, Any], model: Any, **_: Any) -> None:
        refusal = check_sns(params, model.name)
        if refusal is not None:
            raise refusal

    def sqs(params: Mapping[str, Any], model: Any, **_: Any) -> None:
        refusal = check_sqs(params, model.name, SQS_DEFAULT_MAX_BYTES)
        if refusal is not None:
            raise refusal

    for operation in ("Publish", "PublishBatch"):
        events.register(f"before-parameter-build.sns.{operation}", sns, unique_id=f"currencies-limits-sns-{operation}")
    for operation in ("SendMessage", "SendMessageBatch"):
        events.register(f"before-parameter-build.sqs.{operation}", sqs, unique_id=f"currencies-limits-sqs-{operation}")
