"""One least-privilege IAM policy per Lambda function of a stage.

Each function's role may do exactly what its code and its event source mapping do,
on this stage's resources only (`StageArns`): the API reads and writes the table and
reads the search engine; the stream handler reads the stream, publishes to the topic
and dead-letters; the consumer takes from its queue, dead-letters and writes to the
search engine; the metrics janitor reads queue depths. No action is a wildcard and no
ARN has a wildcard account or region; the one `*` resource is `dynamodb:ListStreams`,
which IAM cannot scope to a resource.

`currencies provision` writes the documents with concrete ARNs; `currencies package`
renders them with `${AWS::Region}` / `${AWS::AccountId}` and `for_cloudformation`.
`tests/unit/iam_permissions.py` is the table of every (action, ARN) each function uses;
`tests/unit/test_iam_policies.py` checks these documents, and the code, against it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chalicelib.sinks.indices import templates
from currencies_ops.deploy.stack import FUNCTIONS, StageArns

SearchAuth = Literal["none", "basic", "api_key", "sigv4"]

POLICY_VERSION = "2012-10-17"
LOGS_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")

_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_ACCOUNT = r"\d{12}"
_SECRET_ARN = re.compile(
    rf"^arn:(?P<partition>aws[a-z-]*):(?P<service>secretsmanager|ssm):(?P<region>{_REGION}):(?P<account>{_ACCOUNT}):"
    r"(?:secret:[A-Za-z0-9/_+=.@-]+|parameter/[A-Za-z0-9/_.-]+)$"
)
_DOMAIN_ARN = re.compile(
    rf"^arn:(?P<partition>aws[a-z-]*):(?P<service>es|aoss):(?P<region>{_REGION}):(?P<account>{_ACCOUNT}):"
    r"(?:domain/[a-z][a-z0-9-]{2,27}|collection/[a-z0-9]+)$"
)


class PolicyError(ValueError):
    """The stage's settings cannot give a least-privilege policy; the message names the variable."""


@dataclass(frozen=True)
class SearchAccess:
    """How the functions reach the search engine, as far as IAM is concerned.

    `basic` / `api_key`: the credentials are read from `secret_arn` (a Secrets Manager
    secret or an SSM SecureString parameter). `sigv4`: requests are signed with the
    function's role, so the role needs the engine's HTTP actions on `domain_arn`.
    `none`: the engine is not an AWS resource the role must reach.
    """

    auth: SearchAuth = "none"
    secret_arn: str | None = None
    domain_arn: str | None = None
    events_index: str | None = None
    """The indices the functions use (CURRENCIES_EVENTS_INDEX / _RATES_INDEX); None: the stage's
    names (`StageNames`). With a managed domain, IAM scopes each function's requests to them."""
    rates_index: str | None = None

    def __post_init__(self) -> None:
        if self.auth not in ("none", "basic", "api_key", "sigv4"):
            raise PolicyError(f"CURRENCIES_SEARCH_AUTH must be none, basic, api_key or sigv4, got {self.auth!r}")
        if self.auth in ("basic", "api_key") and not _SECRET_ARN.match(self.secret_arn or ""):
            raise PolicyError(
                f"CURRENCIES_SEARCH_AUTH={self.auth} needs CURRENCIES_SEARCH_SECRET_ARN: the full ARN of a Secrets "
                "Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-xxxxxx) or of an SSM "
                f"parameter (arn:aws:ssm:REGION:ACCOUNT:parameter/PATH); got {self.secret_arn!r}"
            )
        if self.auth == "sigv4" and not _DOMAIN_ARN.match(self.domain_arn or ""):
            raise PolicyError(
                "CURRENCIES_SEARCH_AUTH=sigv4 needs CURRENCIES_SEARCH_DOMAIN_ARN: an OpenSearch Service domain "
                "(arn:aws:es:REGION:ACCOUNT:domain/NAME) or a serverless collection "
                f"(arn:aws:aoss:REGION:ACCOUNT:collection/ID); got {self.domain_arn!r}"
            )

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> SearchAccess:
        """Read CURRENCIES_SEARCH_AUTH, _SECRET_ARN and _DOMAIN_ARN (a stage's `environment_variables`)."""
        auth = env.get("CURRENCIES_SEARCH_AUTH", "none")
        # An ARN the configured auth does not use grants nothing.
        secret_arn = env.get("CURRENCIES_SEARCH_SECRET_ARN") if auth in ("basic", "api_key") else None
        domain_arn = env.get("CURRENCIES_SEARCH_DOMAIN_ARN") if auth == "sigv4" else None
        access = cls(
            auth=auth,  # type: ignore[arg-type]  # checked in __post_init__
            secret_arn=secret_arn or None,
            domain_arn=domain_arn or None,
            events_index=env.get("CURRENCIES_EVENTS_INDEX") or None,
            rates_index=env.get("CURRENCIES_RATES_INDEX") or None,
        )
        signing = env.get("CURRENCIES_SEARCH_SIGV4_SERVICE")
        if access.domain_service is not None and signing is not None and signing != access.domain_service:
            raise PolicyError(
                f"CURRENCIES_SEARCH_SIGV4_SERVICE={signing} signs for another service than "
                f"CURRENCIES_SEARCH_DOMAIN_ARN ({access.domain_service})"
            )
        return access

    @property
    def secret_service(self) -> str | None:
        """`secretsmanager` or `ssm` when the credentials come from a secret."""
        match = _SECRET_ARN.match(self.secret_arn or "") if self.auth in ("basic", "api_key") else None
        return match["service"] if match else None

    @property
    def domain_service(self) -> str | None:
        """`es` (managed domain) or `aoss` (serverless collection) with SigV4."""
        match = _DOMAIN_ARN.match(self.domain_arn or "") if self.auth == "sigv4" else None
        return match["service"] if match else None


def _statement(sid: str, actions: tuple[str, ...] | list[str], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


def _logs(arns: StageArns, function: str) -> dict[str, Any]:
    # Lambda authorises even CreateLogGroup against `<group>:log-stream:`, so one `:*` covers all three.
    return _statement("WritesItsOwnLogGroup", LOGS_ACTIONS, [f"{arns.log_group(function)}:*"])


def _search(arns: StageArns, search: SearchAccess, *, writes: bool) -> list[dict[str, Any]]:
    """The statements of a function that reads (the API) or writes (the consumer) the engine."""
    if search.secret_service == "secretsmanager":
        return [_statement("ReadsTheSearchCredentials", ["secretsmanager:GetSecretValue"], [str(search.secret_arn)])]
    if search.secret_service == "ssm":
        # A SecureString under the AWS-managed key needs no kms statement: the key's policy lets SSM use it.
        return [_statement("ReadsTheSearchCredentials", ["ssm:GetParameter"], [str(search.secret_arn)])]
    if search.domain_service == "aoss":
        # A collection authorises reads and writes with its data-access policy; IAM only lets the role in.
        sid = "IndexesIntoTheSearchCollection" if writes else "SearchesTheSearchCollection"
        return [_statement(sid, ["aoss:APIAccessAll"], [str(search.domain_arn)])]
    if search.domain_service != "es":
        return []
    # A domain authorises each HTTP method on the request's path, so reads and writes are told apart by
    # path: POST is both a search and a bulk write.
    domain = str(search.domain_arn)
    events = search.events_index or arns.names.events_index
    rates = search.rates_index or arns.names.rates_index
    if not writes:
        return [_statement("SearchesTheEventsIndex", ["es:ESHttpPost"], [f"{domain}/{events}/_search"])]
    return [
        _statement(
            "KeepsItsIndexTemplatesCurrent",
            ["es:ESHttpGet", "es:ESHttpPut"],
            [f"{domain}/_index_template/{name}" for name in templates(events, rates)],
        ),
        _statement("CreatesItsIndices", ["es:ESHttpHead", "es:ESHttpPut"], [f"{domain}/{events}", f"{domain}/{rates}"]),
        _statement("BulkWritesChanges", ["es:ESHttpPost"], [f"{domain}/_bulk"]),
    ]


def policy_documents(arns: StageArns, search: SearchAccess) -> dict[str, dict[str, Any]]:
    """Chalice function name -> its IAM policy document; every Resource a plain string ARN."""
    statements = {
        "api_handler": [
            _logs(arns, "api_handler"),
            _statement(
                "ReadsAndWritesRatesInTheTable",
                # Writes are conditional Put/UpdateItem (a delete leaves a tombstone: no DeleteItem).
                ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"],
                [arns.table],
            ),
            *_search(arns, search, writes=False),
        ],
        "relay_changes": [
            _logs(arns, "relay_changes"),
            _statement(
                "MappingReadsTheTableStream",
                ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                [arns.table_streams],
            ),
            # Lambda lists the table's streams; IAM has no resource for ListStreams.
            _statement("MappingListsStreams", ["dynamodb:ListStreams"], ["*"]),
            _statement("PublishesChangesToTheTopic", ["sns:Publish"], [arns.topic]),  # PublishBatch too
            _statement("DeadLettersUnpublishableRecords", ["sqs:SendMessage"], [arns.dead_letter_queue]),
            _statement("MappingReportsAbandonedBatches", ["sqs:SendMessage"], [arns.stream_failures_queue]),
        ],
        "index_changes": [
            _logs(arns, "index_changes"),
            _statement(
                "MappingTakesChangesFromTheQueue",
                ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                [arns.queue],
            ),
            # Without ReportBatchItemFailures the handler deletes what it indexed itself (DeleteMessageBatch).
            _statement("SettlesItsBatchItself", ["sqs:GetQueueUrl"], [arns.queue]),
            _statement("DeadLettersUnindexableMessages", ["sqs:SendMessage"], [arns.dead_letter_queue]),
            *_search(arns, search, writes=True),
        ],
        "tidy_metrics": [
            _logs(arns, "tidy_metrics"),
            _statement("SamplesQueueDepths", ["sqs:GetQueueAttributes"], [arns.queue, arns.dead_letter_queue]),
            _statement("FindsTheConsumerQueue", ["sqs:GetQueueUrl"], [arns.queue]),
        ],
    }
    if tuple(statements) != FUNCTIONS:
        raise PolicyError(f"policies cover {sorted(statements)}, the stage has {sorted(FUNCTIONS)}")
    return {function: {"Version": POLICY_VERSION, "Statement": body} for function, body in statements.items()}


def for_cloudformation(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of `document` whose Resource strings with `${...}` placeholders are wrapped in Fn::Sub.

    Chalice embeds a policy file verbatim in the template, so CloudFormation resolves them there.
    """

    def resource(value: str) -> str | dict[str, str]:
        return {"Fn::Sub": value} if "${" in value else value

    statements = []
    for statement in document["Statement"]:
        resources = statement["Resource"]
        rendered = resource(resources) if isinstance(resources, str) else [resource(r) for r in resources]
        statements.append({**statement, "Resource": rendered})
    return {**document, "Statement": statements}


def policy_path(stage: str, function: str) -> str:
    """A function's policy file relative to `.chalice/`, as config.json names it."""
    return f"policies/{stage}/{function}.json"


def write_policy_files(project_dir: Path, stage: str, documents: dict[str, dict[str, Any]]) -> list[Path]:
    """Write `.chalice/policies/<stage>/<function>.json` for each document; returns the paths written."""
    written = []
    for function, document in documents.items():
        path = project_dir / ".chalice" / policy_path(stage, function)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written


def configure_stage_policies(config: dict[str, Any], stage: str) -> None:
    """Point every function of `stage` at its own policy file in a loaded config.json (edited in place).

    A stage-wide `iam_policy_file` goes: it would be one role's policy for all functions.
    """
    stage_config = config.setdefault("stages", {}).setdefault(stage, {})
    stage_config.pop("iam_policy_file", None)
    stage_config["autogen_policy"] = False
    functions = stage_config.setdefault("lambda_functions", {})
    for function in FUNCTIONS:
        functions.setdefault(function, {})["iam_policy_file"] = policy_path(stage, function)
