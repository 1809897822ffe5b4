"""A stage's AWS resources and the settings Chalice cannot put on its event source mappings.

The single definition behind both deploy paths (the CloudFormation fragment and
`currencies provision` / `configure-mappings`) and the local runtime's emulation of a
mapping, so the three cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

APP_NAME = "currencies"
FUNCTIONS = ("api_handler", "relay_changes", "index_changes", "tidy_metrics")
"""Chalice's names for the functions (`lambda_functions.<name>` in config.json)."""

LAMBDA_TIMEOUT_S = 60
"""Every function's timeout (config.json `lambda_timeout`); the queue's visibility timeout derives from it."""

MAX_RECEIVE_COUNT = 5
"""Receives of one message before SQS moves it to the DLQ (the consumer's `CURRENCIES_MAX_RECEIVES`)."""

QUEUE_VISIBILITY_TIMEOUT_S = 6 * LAMBDA_TIMEOUT_S
"""AWS's advice for a queue that triggers a function: six times its timeout, so retries of a
throttled batch do not make a message visible while it is still being processed."""


@dataclass(frozen=True)
class StreamMappingSettings:
    """The DynamoDB stream -> relay_changes mapping: a poison batch is split, retried a bounded
    number of times, then described to the on-failure queue, never blocking the shard forever."""

    batch_size: int = 100
    starting_position: str = "TRIM_HORIZON"
    report_batch_item_failures: bool = True
    bisect_batch_on_function_error: bool = True
    maximum_retry_attempts: int = 5
    maximum_record_age_s: int = 6 * 3600

    def api_parameters(self) -> dict[str, Any]:
        """The `UpdateEventSourceMapping` / CloudFormation properties Chalice does not set."""
        return {
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if self.report_batch_item_failures else [],
            "BisectBatchOnFunctionError": self.bisect_batch_on_function_error,
            "MaximumRetryAttempts": self.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": self.maximum_record_age_s,
        }


@dataclass(frozen=True)
class QueueMappingSettings:
    """The SQS queue -> index_changes mapping: batches above SQS's 10 need a batching window."""

    batch_size: int = 100
    maximum_batching_window_s: int = 1
    report_batch_item_failures: bool = True

    def api_parameters(self) -> dict[str, Any]:
        return {
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if self.report_batch_item_failures else [],
            "MaximumBatchingWindowInSeconds": self.maximum_batching_window_s,
        }


STREAM_MAPPING = StreamMappingSettings()
QUEUE_MAPPING = QueueMappingSettings()


def queue_policy(queue_arn: Any, topic_arn: Any) -> dict[str, Any]:
    """Only the stage's topic may send to its queue (SNS delivers as the service principal).

    The ARNs are strings (provision) or CloudFormation references (the template).
    """
    statement = {
        "Sid": "TopicDeliversToQueue",
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    }
    return {"Version": "2012-10-17", "Statement": [statement]}


@dataclass(frozen=True)
class StageNames:
    """What one stage's resources are called; deployed stages never share a table or a queue."""

    stage: str

    @property
    def table(self) -> str:
        return f"currency-{self.stage}"

    @property
    def topic(self) -> str:
        return f"currency-{self.stage}-topic"

    @property
    def queue(self) -> str:
        return f"currency-{self.stage}-queue"

    @property
    def dead_letter_queue(self) -> str:
        return f"currency-{self.stage}-queue-dlq"

    @property
    def stream_failures_queue(self) -> str:
        """The stream mapping's on-failure destination: descriptions of stream batches given up on."""
        return f"currency-{self.stage}-stream-failures"

    @property
    def events_index(self) -> str:
        return f"currency-{self.stage}-events"

    @property
    def rates_index(self) -> str:
        return f"currency-{self.stage}-rates"

    def function_name(self, function: str) -> str:
        """The deployed Lambda function's name, as Chalice derives it."""
        base = f"{APP_NAME}-{self.stage}"
        return base if function == "api_handler" else f"{base}-{function}"


@dataclass(frozen=True)
class StageArns:
    """ARNs of a stage's resources in one account and region.

    `region` and `account` may be CloudFormation placeholders (`${AWS::Region}`,
    `${AWS::AccountId}`) when rendering the template; `Fn::Sub` resolves them.
    """

    names: StageNames
    region: str
    account: str
    partition: str = "aws"

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    @property
    def table(self) -> str:
        return self._arn("dynamodb", f"table/{self.names.table}")

    @property
    def table_streams(self) -> str:
        """Every stream of the table: its label is only known once the table exists."""
        return f"{self.table}/stream/*"

    @property
    def topic(self) -> str:
        return self._arn("sns", self.names.topic)

    @property
    def queue(self) -> str:
        return self._arn("sqs", self.names.queue)

    @property
    def dead_letter_queue(self) -> str:
        return self._arn("sqs", self.names.dead_letter_queue)

    @property
    def stream_failures_queue(self) -> str:
        return self._arn("sqs", self.names.stream_failures_queue)

    def queue_url(self, name: str) -> str:
        return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{name}"

    def log_group(self, function: str) -> str:
        return self._arn("logs", f"log-group:/aws/lambda/{self.names.function_name(function)}")
