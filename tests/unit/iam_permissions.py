"""The permission table: every (IAM action, resource ARN) each Lambda function of a stage uses.

Written by reading the code and AWS's documentation of what Lambda does with the
function's role, independently of `currencies_ops.deploy.policies`, so the policies are
checked against it rather than against themselves. `source` says who makes the call:
  - "runtime": the Lambda runtime (the function's logs);
  - "mapping": the event source mapping, with the function's role (stream and queue
    polling, the on-failure destination);
  - "code":    our code; `test_iam_policies` records what the code calls and compares.
Resources are templates over `context(stage, region, account)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from currencies_ops.deploy.policies import SearchAccess
from currencies_ops.deploy.stack import StageArns, StageNames

Source = Literal["runtime", "mapping", "code"]
SearchKind = Literal["none", "secretsmanager", "ssm", "es", "aoss"]


@dataclass(frozen=True)
class Use:
    action: str
    resource: str
    source: Source


def _logs() -> list[Use]:
    # Lambda authorises CreateLogGroup against `<group>:log-stream:` (no stream name).
    return [
        Use("logs:CreateLogGroup", "{log_group}:log-stream:", "runtime"),
        Use("logs:CreateLogStream", "{log_group}:log-stream:{log_stream}", "runtime"),
        Use("logs:PutLogEvents", "{log_group}:log-stream:{log_stream}", "runtime"),
    ]


PERMISSIONS: dict[str, list[Use]] = {
    "api_handler": [
        *_logs(),
        Use("dynamodb:GetItem", "{table}", "code"),
        Use("dynamodb:PutItem", "{table}", "code"),
        Use("dynamodb:UpdateItem", "{table}", "code"),
        Use("dynamodb:Scan", "{table}", "code"),
    ],
    "relay_changes": [
        *_logs(),
        Use("dynamodb:DescribeStream", "{stream}", "mapping"),
        Use("dynamodb:GetRecords", "{stream}", "mapping"),
        Use("dynamodb:GetShardIterator", "{stream}", "mapping"),
        Use("dynamodb:ListStreams", "*", "mapping"),
        Use("sqs:SendMessage", "{stream_failures_queue}", "mapping"),
        Use("sns:Publish", "{topic}", "code"),  # PublishBatch is authorised as sns:Publish
        Use("sqs:SendMessage", "{dead_letter_queue}", "code"),
    ],
    "index_changes": [
        *_logs(),
        Use("sqs:ReceiveMessage", "{queue}", "mapping"),
        Use("sqs:DeleteMessage", "{queue}", "mapping"),
        Use("sqs:GetQueueAttributes", "{queue}", "mapping"),
        Use("sqs:GetQueueUrl", "{queue}", "code"),  # settling a batch without partial responses
        Use("sqs:DeleteMessage", "{queue}", "code"),  # ... with DeleteMessageBatch
        Use("sqs:SendMessage", "{dead_letter_queue}", "code"),
    ],
    "tidy_metrics": [
        *_logs(),
        Use("sqs:GetQueueUrl", "{queue}", "code"),
        Use("sqs:GetQueueAttributes", "{queue}", "code"),
        Use("sqs:GetQueueAttributes", "{dead_letter_queue}", "code"),
    ],
}

_SECRET_READERS = ("api_handler", "index_changes")
SEARCH_PERMISSIONS: dict[SearchKind, dict[str, list[Use]]] = {
    "none": {},
    "secretsmanager": {f: [Use("secretsmanager:GetSecretValue", "{secret}", "code")] for f in _SECRET_READERS},
    "ssm": {f: [Use("ssm:GetParameter", "{parameter}", "code")] for f in _SECRET_READERS},
    "es": {
        "api_handler": [Use("es:ESHttpPost", "{domain}/{events_index}/_search", "code")],
        "index_changes": [
            Use("es:ESHttpGet", "{domain}/_index_template/{events_index}-template", "code"),
            Use("es:ESHttpGet", "{domain}/_index_template/{rates_index}-template", "code"),
            Use("es:ESHttpPut", "{domain}/_index_template/{events_index}-template", "code"),
            Use("es:ESHttpPut", "{domain}/_index_template/{rates_index}-template", "code"),
            Use("es:ESHttpHead", "{domain}/{events_index}", "code"),
            Use("es:ESHttpHead", "{domain}/{rates_index}", "code"),
            Use("es:ESHttpPut", "{domain}/{events_index}", "code"),
            Use("es:ESHttpPut", "{domain}/{rates_index}", "code"),
            Use("es:ESHttpPost", "{domain}/_bulk", "code"),
        ],
    },
    # Every request to a serverless collection is authorised as APIAccessAll on the collection.
    "aoss": {f: [Use("aoss:APIAccessAll", "{collection}", "code")] for f in _SECRET_READERS},
}


def context(stage: str, region: str, account: str) -> dict[str, str]:
    """Template values for one stage in one account and region (search resources are per stage too)."""
    names = StageNames(stage)
    arns = StageArns(names, region, account)
    prefix = f"arn:aws:{{}}:{region}:{account}"
    return {
        "table": arns.table,
        "stream": f"{arns.table}/stream/2026-11-27T10:00:00.000",
        "topic": arns.topic,
        "queue": arns.queue,
        "dead_letter_queue": arns.dead_letter_queue,
        "stream_failures_queue": arns.stream_failures_queue,
        "log_stream": "2026/11/27/[$LATEST]0123456789abcdef0123456789abcdef",
        "secret": prefix.format("secretsmanager") + f":secret:currencies/{stage}/search-AbC123",
        "parameter": prefix.format("ssm") + f":parameter/currencies/{stage}/search",
        "domain": prefix.format("es") + f":domain/currencies-{stage}",
        "collection": prefix.format("aoss") + f":collection/{stage}0collection0id",
        "events_index": names.events_index,
        "rates_index": names.rates_index,
    }


def search_access(kind: SearchKind, stage: str, region: str, account: str) -> SearchAccess:
    """The stage's SearchAccess of a kind, naming the same resources as `context`."""
    values = context(stage, region, account)
    return {
        "none": SearchAccess(),
        "secretsmanager": SearchAccess("basic", secret_arn=values["secret"]),
        "ssm": SearchAccess("api_key", secret_arn=values["parameter"]),
        "es": SearchAccess("sigv4", domain_arn=values["domain"]),
        "aoss": SearchAccess("sigv4", domain_arn=values["collection"]),
    }[kind]


def pairs(
    function: str, kind: SearchKind, stage: str, region: str, account: str, *, sources: tuple[Source, ...] | None = None
) -> set[tuple[str, str]]:
    """The (action, resource) pairs `function` needs, resolved for one stage, region and account."""
    values = context(stage, region, account) | {
        "log_group": StageArns(StageNames(stage), region, account).log_group(function)
    }
    uses = PERMISSIONS[function] + SEARCH_PERMISSIONS[kind].get(function, [])
    return {(u.action, u.resource.format(**values)) for u in uses if sources is None or u.source in sources}
