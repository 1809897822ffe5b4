"""The local runtime refuses SNS and SQS messages over AWS's limits, as AWS does (moto does not)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from currencies_local import aws_limits

NOWHERE = "http://127.0.0.1:9"  # nothing listens: a call that passes the check fails to connect


@pytest.fixture
def session() -> boto3.Session:
    session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    aws_limits.enforce(session)
    return session


def test_attributes_count_toward_the_size() -> None:
    attributes = {"symbol": {"DataType": "String", "StringValue": "EUR"}}
    assert aws_limits.message_bytes("héllo", attributes) == len("héllo".encode()) + len("symbol") + len("String") + 3


def test_an_sns_batch_just_under_the_body_limit_is_refused_for_its_attributes(session: boto3.Session) -> None:
    sns = session.client("sns", endpoint_url=NOWHERE)
    attributes = {"type": {"DataType": "String", "StringValue": "INSERT"}}
    body = "x" * (aws_limits.SNS_MAX_BYTES // 2 - 5)
    entries = [{"Id": str(n), "Message": body, "MessageAttributes": attributes} for n in range(2)]
    assert sum(len(e["Message"]) for e in entries) < aws_limits.SNS_MAX_BYTES
    with pytest.raises(ClientError) as refused:
        sns.publish_batch(TopicArn="arn:aws:sns:us-east-1:123456789012:t", PublishBatchRequestEntries=entries)
    assert refused.value.response["Error"]["Code"] == "BatchRequestTooLong"
    with pytest.raises(EndpointConnectionError):  # within the limit: sent
        sns.publish_batch(TopicArn="arn:aws:sns:us-east-1:123456789012:t", PublishBatchRequestEntries=entries[:1])


def test_one_sns_message_over_the_limit_is_refused(session: boto3.Session) -> None:
    sns = session.client("sns", endpoint_url=NOWHERE)
    with pytest.raises(ClientError) as refused:
        sns.publish(TopicArn="arn:aws:sns:us-east-1:123456789012:t", Message="x" * (aws_limits.SNS_MAX_BYTES + 1))
    assert refused.value.response["Error"]["Code"] == "InvalidParameter"


def test_sqs_messages_and_batches_over_the_limit_are_refused(session: boto3.Session) -> None:
    sqs = session.client("sqs", endpoint_url=NOWHERE)
    url = f"{NOWHERE}/123456789012/q"
    with pytest.raises(ClientError) as refused:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (aws_limits.SQS_DEFAULT_MAX_BYTES + 1))
    assert refused.value.response["Error"]["Code"] == "InvalidParameterValue"
    entries = [{"Id": str(n), "MessageBody": "x" * 100_000} for n in range(3)]
    with pytest.raises(ClientError) as refused:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert refused.value.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
