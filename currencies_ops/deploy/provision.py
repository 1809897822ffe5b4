"""Create a stage's table, topic and queues with boto3, for the `chalice deploy` path.

`chalice deploy` creates functions, roles, the REST API and event source mappings, but no
table, topic or queue. `provision` creates them as the CloudFormation fragment does (both
read `stack`), finding what exists, so it can run any number of times; then the stage's
`.chalice/config.json` gets their names and ARNs and each function its policy file.
The local runtime (`currencies_local.provision`) creates its resources with the same
`create_resources`, so there is one way to create each resource.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from botocore.exceptions import NoRegionError

from currencies_ops.deploy.policies import SearchAccess, configure_stage_policies, policy_documents, write_policy_files
from currencies_ops.deploy.stack import (
    MAX_RECEIVE_COUNT,
    QUEUE_MAPPING,
    QUEUE_VISIBILITY_TIMEOUT_S,
    StageArns,
    StageNames,
    queue_policy,
)

if TYPE_CHECKING:
    import boto3

Outcome = Literal["created", "found", "updated"]


class ResourceNames(Protocol):
    """What the resources are called: a deployed stage's `StageNames`, or the local runtime's names."""

    @property
    def table(self) -> str: ...

    @property
    def topic(self) -> str: ...

    @property
    def queue(self) -> str: ...

    @property
    def dead_letter_queue(self) -> str: ...

    @property
    def stream_failures_queue(self) -> str: ...


@dataclass(frozen=True)
class Step:
    """One resource (or one setting of it) and what provisioning did about it."""

    resource: str
    name: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Created:
    """Where the resources are, once they exist."""

    table_name: str
    table_arn: str
    stream_arn: str
    topic_arn: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    stream_failures_url: str
    stream_failures_arn: str


@dataclass(frozen=True)
class Settings:
    """How the resources are set up: a deployed stage's, or the local runtime's quicker retries."""

    visibility_timeout_s: int = QUEUE_VISIBILITY_TIMEOUT_S
    max_receive_count: int = MAX_RECEIVE_COUNT
    point_in_time_recovery: bool = True
    deletion_protection: bool = False


def create_resources(
    names: ResourceNames, settings: Settings, *, dynamodb: Any, sns: Any, sqs: Any
) -> tuple[Created, list[Step]]:
    """Find or create every resource; existing ones are brought to `settings` (reported as updated)."""
    steps: list[Step] = []
    table_arn, stream_arn = ensure_table(dynamodb, names.table, settings, steps)
    topic_arn = ensure_topic(sns, names.topic, steps)
    dlq_url, dlq_arn = ensure_queue(sqs, names.dead_letter_queue, {}, steps, "dead-letter queue")
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.max_receive_count)}
    queue_attributes = {"VisibilityTimeout": str(settings.visibility_timeout_s), "RedrivePolicy": json.dumps(redrive)}
    queue_url, queue_arn = ensure_queue(sqs, names.queue, queue_attributes, steps, "queue")
    ensure_queue_policy(sqs, queue_url, json.dumps(queue_policy(queue_arn, topic_arn)), names.queue, steps)
    ensure_subscription(sns, topic_arn, queue_arn, steps)
    failures_url, failures_arn = ensure_queue(sqs, names.stream_failures_queue, {}, steps, "stream-failures queue")
    created = Created(
        names.table,
        table_arn,
        stream_arn,
        topic_arn,
        queue_url,
        queue_arn,
        dlq_url,
        dlq_arn,
        failures_url,
        failures_arn,
    )
    return created, steps


def ensure_table(dynamodb: Any, name: str, settings: Settings, steps: list[Step]) -> tuple[str, str]:
    """The table (on demand, NEW_AND_OLD_IMAGES stream); returns its ARN and its stream's ARN."""
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            DeletionProtectionEnabled=settings.deletion_protection,
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
        table = dynamodb.describe_table(TableName=name)["Table"]
        protection = ", deletion protection" if settings.deletion_protection else ""
        steps.append(Step("table", name, "created", f"on demand, stream NEW_AND_OLD_IMAGES{protection}"))
    else:
        steps.append(_bring_table_to(dynamodb, table, settings))
    if settings.point_in_time_recovery:
        steps.append(_point_in_time_recovery(dynamodb, name, just_created=steps[-1].outcome == "created"))
    return table["TableArn"], table["LatestStreamArn"]


def _bring_table_to(dynamodb: Any, table: dict[str, Any], settings: Settings) -> Step:
    name, changes, details = table["TableName"], {}, []
    stream = table.get("StreamSpecification") or {}
    if stream.get("StreamEnabled") and stream.get("StreamViewType") != "NEW_AND_OLD_IMAGES":
        raise ProvisionError(
            f"table {name} streams {stream.get('StreamViewType')}, not NEW_AND_OLD_IMAGES; changing it replaces "
            "the stream (disable it, run provision again, then chalice deploy)"
        )
    if not stream.get("StreamEnabled"):
        changes["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        details.append("stream enabled")
    if (table.get("BillingModeSummary") or {}).get("BillingMode") != "PAY_PER_REQUEST":
        changes["BillingMode"] = "PAY_PER_REQUEST"
        details.append("billing on demand")
    if bool(table.get("DeletionProtectionEnabled")) != settings.deletion_protection:
        changes["DeletionProtectionEnabled"] = settings.deletion_protection
        details.append(f"deletion protection {'on' if settings.deletion_protection else 'off'}")
    if not changes:
        return Step("table", name, "found")
    dynamodb.update_table(TableName=name, **changes)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    table.update(dynamodb.describe_table(TableName=name)["Table"])
    return Step("table", name, "updated", ", ".join(details))


def _point_in_time_recovery(dynamodb: Any, name: str, *, just_created: bool) -> Step:
    backups = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    status = (backups.get("PointInTimeRecoveryDescription") or {}).get("PointInTimeRecoveryStatus")
    if status == "ENABLED":
        return Step("point-in-time recovery", name, "created" if just_created else "found")
    dynamodb.update_continuous_backups(
        TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    return Step("point-in-time recovery", name, "created" if just_created else "updated", "enabled")


def ensure_topic(sns: Any, name: str, steps: list[Step]) -> str:
    """The topic's ARN (CreateTopic returns an existing topic's ARN, so look first to report it right)."""
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            if topic["TopicArn"].rpartition(":")[2] == name:
                steps.append(Step("topic", name, "found"))
                return topic["TopicArn"]
    arn = sns.create_topic(Name=name)["TopicArn"]
    steps.append(Step("topic", name, "created"))
    return arn


def ensure_queue(sqs: Any, name: str, attributes: dict[str, str], steps: list[Step], kind: str) -> tuple[str, str]:
    """A queue with these attributes; returns its URL and ARN. Differing attributes are set."""
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        steps.append(Step(kind, name, "created", _describe(attributes)))
        return url, _queue_arn(sqs, url)
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    differing = {key: value for key, value in attributes.items() if not _same_attribute(current.get(key), value)}
    if differing:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=differing)
        steps.append(Step(kind, name, "updated", _describe(differing)))
    else:
        steps.append(Step(kind, name, "found"))
    return url, current["QueueArn"]


def ensure_queue_policy(sqs: Any, url: str, policy: str, queue: str, steps: list[Step]) -> None:
    """The queue's access policy: only the topic may send to it."""
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get("Attributes", {}).get("Policy")
    if _same_attribute(current, policy):
        steps.append(Step("queue policy", queue, "found"))
        return
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
    steps.append(Step("queue policy", queue, "created" if current is None else "updated", "only the topic may send"))


def ensure_subscription(sns: Any, topic_arn: str, queue_arn: str, steps: list[Step]) -> str:
    """The queue's subscription to the topic; an existing identical one is reused, never doubled."""
    queue = queue_arn.rpartition(":")[2]
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for subscription in page["Subscriptions"]:
            if subscription["Protocol"] == "sqs" and subscription["Endpoint"] == queue_arn:
                steps.append(Step("subscription", queue, "found"))
                return subscription["SubscriptionArn"]
    arn = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)["SubscriptionArn"]
    steps.append(Step("subscription", queue, "created", f"to {topic_arn.rpartition(':')[2]}"))
    return arn


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _same_attribute(current: str | None, wanted: str) -> bool:
    """Equal as SQS means it: JSON attributes (policies) compare parsed, with numbers as text."""
    if current is None:
        return False
    if current == wanted:
        return True
    try:
        return _normalised(json.loads(current)) == _normalised(json.loads(wanted))
    except ValueError:
        return False


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _describe(attributes: dict[str, str]) -> str:
    parts = []
    if "VisibilityTimeout" in attributes:
        parts.append(f"visibility timeout {attributes['VisibilityTimeout']} s")
    if "RedrivePolicy" in attributes:
        redrive = json.loads(attributes["RedrivePolicy"])
        parts.append(f"to {redrive['deadLetterTargetArn'].rpartition(':')[2]} after {redrive['maxReceiveCount']}")
    return ", ".join(parts)


class ProvisionError(RuntimeError):
    """A resource exists in a shape provisioning will not change by itself; the message says what to do."""


# --- a deployed stage ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisionReport:
    """What `provision` did, where, and what the stage's config gets."""

    stage: str
    arns: StageArns
    created: Created
    steps: list[Step]
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Function name -> its IAM policy document, with this account's and region's ARNs."""

    @property
    def created_nothing(self) -> bool:
        return all(step.outcome == "found" for step in self.steps)


def provision(
    stage: str, session: boto3.Session, search: SearchAccess, *, deletion_protection: bool
) -> ProvisionReport:
    """Create (or find) the stage's resources in the session's account and region."""
    region = session.region_name
    if not region:
        raise NoRegionError()
    identity = session.client("sts").get_caller_identity()
    names = StageNames(stage)
    arns = StageArns(names, region, identity["Account"], partition=identity["Arn"].split(":")[1])
    created, steps = create_resources(
        names,
        Settings(deletion_protection=deletion_protection),
        dynamodb=session.client("dynamodb"),
        sns=session.client("sns"),
        sqs=session.client("sqs"),
    )
    return ProvisionReport(stage, arns, created, steps, policy_documents(arns, search))


def stage_environment(names: StageNames, created: Created) -> dict[str, str]:
    """The variables the handlers read (chalicelib.config) for these resources."""
    return {
        "CURRENCIES_TABLE": names.table,
        "CURRENCIES_STREAM_ARN": created.stream_arn,
        "CURRENCIES_TOPIC_ARN": created.topic_arn,
        "CURRENCIES_TOPIC": names.topic,
        "CURRENCIES_QUEUE": names.queue,
        "CURRENCIES_DLQ_URL": created.dlq_url,
        "CURRENCIES_MAX_RECEIVES": str(MAX_RECEIVE_COUNT),
        "CURRENCIES_EVENTS_INDEX": names.events_index,
        "CURRENCIES_RATES_INDEX": names.rates_index,
        "CURRENCIES_PARTIAL_BATCH_RESPONSE": "true",
        # app.py gives the mapping these on every deploy, so a redeploy keeps configure-mappings' values.
        "CURRENCIES_BATCH_SIZE": str(QUEUE_MAPPING.batch_size),
        "CURRENCIES_BATCH_WINDOW_S": str(QUEUE_MAPPING.maximum_batching_window_s),
    }


def with_stage_environment(config: dict[str, Any], stage: str, environment: dict[str, str]) -> dict[str, Any]:
    """config.json with the stage's resource variables set; the user's other variables and settings kept."""
    updated = json.loads(json.dumps(config))
    stage_config = updated.setdefault("stages", {}).setdefault(stage, {})
    stage_config.setdefault("api_gateway_stage", "api")
    # Written out, so a CURRENCIES_WRITE_AUTH in the deployer's shell cannot open the API; the user's choice stays.
    secure_default = {"CURRENCIES_WRITE_AUTH": "iam"}
    stage_config["environment_variables"] = {
        **secure_default,
        **stage_config.get("environment_variables", {}),
        **environment,
    }
    return updated


def config_path(project_dir: Path) -> Path:
    return project_dir / ".chalice" / "config.json"


def read_stage_environment(project_dir: Path, stage: str) -> dict[str, str]:
    """The variables a stage's functions get: the top level's, overridden by the stage's (as Chalice merges them)."""
    config = json.loads(config_path(project_dir).read_text())
    stage_config = config.get("stages", {}).get(stage, {})
    return {**config.get("environment_variables", {}), **stage_config.get("environment_variables", {})}


def write_stage_config(project_dir: Path, report: ProvisionReport) -> list[Path]:
    """Write the stage's variables into config.json and its functions' policy files; returns the files written."""
    path = config_path(project_dir)
    config = with_stage_environment(
        json.loads(path.read_text()), report.stage, stage_environment(report.arns.names, report.created)
    )
    policy_files = write_policy_files(project_dir, report.stage, report.policies)
    configure_stage_policies(config, report.stage)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return [path, *policy_files]
