"""Create the AWS resources the pipeline needs (on moto locally; `chalice deploy` creates none).

Idempotent: each call finds or creates the table, topic, queues and subscription, with the
same code `currencies provision` creates a deployed stage's with (currencies_ops.deploy.provision).
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3

from currencies_ops.deploy.provision import Settings, create_resources

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
    names = LocalNames(table_name, topic_name, queue_name)
    created, _ = create_resources(
        names,
        Settings(VISIBILITY_TIMEOUT_S, MAX_RECEIVE_COUNT, point_in_time_recovery=False),
        dynamodb=boto3.client("dynamodb"),
        sns=boto3.client("sns"),
        sqs=boto3.client("sqs"),
    )
    return Resources(
        table_name,
        created.stream_arn,
        created.topic_arn,
        queue_name,
        created.queue_url,
        created.queue_arn,
        created.dlq_url,
        created.dlq_arn,
        created.stream_failures_url,
    )


@dataclass(frozen=True)
class LocalNames:
    """The local runtime's names (a deployed stage's come from `StageNames`)."""

    table: str
    topic: str
    queue: str

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}-dlq"

    @property
    def stream_failures_queue(self) -> str:
        return f"{self.table}-stream-failures"
