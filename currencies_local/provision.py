"""Create the AWS resources the pipeline needs (on moto locally; `chalice deploy` creates none).

Idempotent: each call finds or creates the table, topic, queues and subscription.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

# Locally a failed message comes back after 5 s, and goes to the DLQ after 5 receives.
VISIBILITY_TIMEOUT_S = 5
MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class Resources:
    table_name: str
    stream_arn: str
    topic_arn: str
    queue_name: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    stream_failures_url: str
    """The stream mapping's on-failure destination: descriptions of stream batches given up on."""

    def environment(self) -> dict[str, str]:
        """The handlers' settings (chalicelib.config) for these resources."""
        return {
            "CURRENCIES_TABLE": self.table_name,
            "CURRENCIES_STREAM_ARN": self.stream_arn,
            "CURRENCIES_TOPIC_ARN": self.topic_arn,
            "CURRENCIES_TOPIC": self.topic_arn.rpartition(":")[2],
            "CURRENCIES_QUEUE": self.queue_name,
            "CURRENCIES_DLQ_URL": self.dlq_url,
            "CURRENCIES_MAX_RECEIVES": str(MAX_RECEIVE_COUNT),
        }


def provision(
    table_name: str = "currency", topic_name: str = "currency-topic", queue_name: str = "currency-queue"
) -> Resources:
    dynamodb, sns, sqs = boto3.client("dynamodb"), boto3.client("sns"), boto3.client("sqs")
    stream_arn = _table(dynamodb, table_name)
    topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
    dlq_url = sqs.create_queue(QueueName=f"{queue_name}-dlq")["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(
        QueueName=queue_name,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT_S),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
        },
    )["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": _allow_topic(queue_arn, topic_arn)})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    stream_failures_url = sqs.create_queue(QueueName=f"{table_name}-stream-failures")["QueueUrl"]
    return Resources(
        table_name, stream_arn, topic_arn, queue_name, queue_url, queue_arn, dlq_url, dlq_arn, stream_failures_url
    )


def _table(dynamodb: Any, name: str) -> str:
    try:
        description = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        description = dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    return description["LatestStreamArn"]


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _allow_topic(queue_arn: str, topic_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
    )
