"""The CloudFormation fragment `chalice package --merge-template` merges into Chalice's SAM template.

Chalice creates the functions, their roles, the REST API and bare event source mappings; it
creates no table, topic or queue, and cannot set the mapping settings that make the pipeline
safe. This fragment adds both. Chalice merges it key by key (nested objects merge, anything
else is replaced), so it only *adds* properties to Chalice's own resources: it never replaces
an object Chalice wrote (the SQS event's `Queue` stays Chalice's `Fn::Sub`; the function's
environment references the queue, which orders it after the queue).

Every name, ARN and setting comes from `currencies_ops.deploy.stack`, which the boto3 deploy
path and the local runtime read too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from chalicelib.api.access import GATEWAY_ERROR_CODES
from currencies_ops.deploy.policies import SearchAccess, for_cloudformation, policy_documents
from currencies_ops.deploy.stack import (
    FUNCTIONS,
    MAX_RECEIVE_COUNT,
    QUEUE_MAPPING,
    QUEUE_VISIBILITY_TIMEOUT_S,
    STREAM_MAPPING,
    StageArns,
    StageNames,
    queue_policy,
)

TABLE = "CurrencyTable"
TOPIC = "CurrencyTopic"
QUEUE = "CurrencyQueue"
DEAD_LETTER_QUEUE = "CurrencyDeadLetterQueue"
STREAM_FAILURES_QUEUE = "StreamFailuresQueue"
SUBSCRIPTION = "CurrencyQueueSubscription"
QUEUE_POLICY = "CurrencyQueuePolicy"
"""Logical ids of the resources the fragment creates."""

FUNCTION_IDS = {
    "api_handler": "APIHandler",
    "relay_changes": "RelayChanges",
    "index_changes": "IndexChanges",
    "tidy_metrics": "TidyMetrics",
}
"""Chalice's logical ids of the functions (checked against `chalice package` by the integration tests)."""

ROLE_IDS = {
    "api_handler": "ApiHandlerRole",
    "relay_changes": "RelayChangesRole",
    "index_changes": "IndexChangesRole",
    "tidy_metrics": "TidyMetricsRole",
}
REST_API = "RestAPI"
"""Chalice's logical id of the REST API (an AWS::Serverless::Api whose DefinitionBody is its OpenAPI)."""
STREAM_EVENT = "RelayChangesDynamodbEventSource"
QUEUE_EVENT = "IndexChangesSqsEventSource"
"""Chalice's names of the two event sources inside the functions' `Events`."""

PLACEHOLDER_REGION = "${AWS::Region}"
PLACEHOLDER_ACCOUNT = "${AWS::AccountId}"
PLACEHOLDER_PARTITION = "${AWS::Partition}"


def stage_arns(stage: str) -> StageArns:
    """The stage's ARNs with CloudFormation's pseudo parameters where the account and region go."""
    return StageArns(
        StageNames(stage), region=PLACEHOLDER_REGION, account=PLACEHOLDER_ACCOUNT, partition=PLACEHOLDER_PARTITION
    )


def deployed_functions(environment: dict[str, str]) -> tuple[str, ...]:
    """The functions app.py defines for a stage's environment: the janitor only with a Pushgateway."""
    return tuple(fn for fn in FUNCTIONS if fn != "tidy_metrics" or environment.get("CURRENCIES_PUSHGATEWAY_URL"))


def fragment(
    stage: str,
    *,
    deletion_protection: bool,
    search: SearchAccess,
    functions: Collection[str] = FUNCTIONS,
) -> dict[str, Any]:
    """The resources of `stage` and the settings Chalice cannot write, as a template to merge.

    `functions` are those Chalice emits for the stage (see `deployed_functions`): the fragment
    must not name a resource Chalice did not create, or the merge leaves a typeless stub.
    """
    unknown = set(functions) - set(FUNCTIONS)
    if unknown:
        raise ValueError(f"unknown functions: {sorted(unknown)}")
    names = StageNames(stage)
    resources: dict[str, Any] = {
        TABLE: _table(names, deletion_protection),
        TOPIC: {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": names.topic}},
        DEAD_LETTER_QUEUE: _queue(names.dead_letter_queue),
        STREAM_FAILURES_QUEUE: _queue(names.stream_failures_queue),
        QUEUE: _queue(
            names.queue,
            VisibilityTimeout=QUEUE_VISIBILITY_TIMEOUT_S,
            RedrivePolicy={
                "deadLetterTargetArn": {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]},
                "maxReceiveCount": MAX_RECEIVE_COUNT,
            },
        ),
        SUBSCRIPTION: {
            "Type": "AWS::SNS::Subscription",
            "Properties": {
                "TopicArn": {"Ref": TOPIC},
                "Protocol": "sqs",
                "Endpoint": {"Fn::GetAtt": [QUEUE, "Arn"]},
            },
        },
        QUEUE_POLICY: _queue_policy(),
    }
    documents = policy_documents(stage_arns(stage), search)
    for function in functions:
        resources[FUNCTION_IDS[function]] = {"Properties": {"Environment": {"Variables": _resource_variables()}}}
        resources[ROLE_IDS[function]] = _role_policy(function, documents[function])
    if "relay_changes" in functions:
        _merge(resources[FUNCTION_IDS["relay_changes"]], _stream_event())
    if "index_changes" in functions:
        _merge(resources[FUNCTION_IDS["index_changes"]], _queue_event())
    resources[REST_API] = {
        "Properties": {"DefinitionBody": {"x-amazon-apigateway-gateway-responses": gateway_responses()}}
    }
    return {"Resources": resources, "Outputs": _outputs()}


def gateway_responses() -> dict[str, Any]:
    """What API Gateway answers when it refuses a request itself (no valid signature, token or key;
    throttled; too large): the body every handler error has, `{"error": CODE, "message": TEXT}`.

    In the API definition, not as separate GatewayResponse resources: SAM deploys the
    definition, so they are in the first deployment and in every later one.
    """
    return {
        response_type: {
            "responseTemplates": {"application/json": f'{{"error": "{code}", "message": $context.error.messageString}}'}
        }
        for response_type, code in GATEWAY_ERROR_CODES.items()
    }


def _table(names: StageNames, deletion_protection: bool) -> dict[str, Any]:
    # A protected table also outlives its stack: deleting the stack must not delete the rates.
    policy = "Retain" if deletion_protection else "Delete"
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": policy,
        "UpdateReplacePolicy": policy,
        "Properties": {
            "TableName": names.table,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "symbol", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "symbol", "KeyType": "HASH"}],
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "DeletionProtectionEnabled": deletion_protection,
        },
    }


def _queue(name: str, **properties: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::SQS::Queue",
        "Properties": {"QueueName": name, "SqsManagedSseEnabled": True, **properties},
    }


def _queue_policy() -> dict[str, Any]:
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": QUEUE}],
            "PolicyDocument": queue_policy({"Fn::GetAtt": [QUEUE, "Arn"]}, {"Ref": TOPIC}),
        },
    }


def _resource_variables() -> dict[str, Any]:
    """The settings that name created resources, resolved by CloudFormation (config.json holds placeholders)."""
    return {
        "CURRENCIES_TABLE": {"Ref": TABLE},
        "CURRENCIES_STREAM_ARN": {"Fn::GetAtt": [TABLE, "StreamArn"]},
        "CURRENCIES_TOPIC": {"Fn::GetAtt": [TOPIC, "TopicName"]},
        "CURRENCIES_TOPIC_ARN": {"Ref": TOPIC},
        "CURRENCIES_QUEUE": {"Fn::GetAtt": [QUEUE, "QueueName"]},
        "CURRENCIES_DLQ_URL": {"Ref": DEAD_LETTER_QUEUE},
    }


def _role_policy(function: str, document: dict[str, Any]) -> dict[str, Any]:
    """The role's one policy, the same document as `.chalice/policies/<stage>/<function>.json`.

    Chalice embeds that file; restating it here keeps the template right even if the file on
    disk is stale (the merge replaces Chalice's list as a whole).
    """
    role = ROLE_IDS[function]
    return {
        "Properties": {"Policies": [{"PolicyName": f"{role}Policy", "PolicyDocument": for_cloudformation(document)}]}
    }


def _stream_event() -> dict[str, Any]:
    """Chalice's stream mapping, completed: bounded retries, split batches, failures described to a queue."""
    properties: dict[str, Any] = {
        "Stream": {"Fn::GetAtt": [TABLE, "StreamArn"]},
        "BatchSize": STREAM_MAPPING.batch_size,
        **STREAM_MAPPING.api_parameters(),
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [STREAM_FAILURES_QUEUE, "Arn"]}}},
    }
    return {"Properties": {"Events": {STREAM_EVENT: {"Properties": properties}}}}


def _queue_event() -> dict[str, Any]:
    """Chalice's queue mapping, completed.

    Chalice names the queue with an `Fn::Sub` of its name, which orders nothing; the function's
    `CURRENCIES_QUEUE` (`Fn::GetAtt` of the queue) makes it, and so its mapping, wait for the
    queue. A `DependsOn` as well would be redundant (cfn-lint W3005).
    """
    properties = {"BatchSize": QUEUE_MAPPING.batch_size, **QUEUE_MAPPING.api_parameters()}
    return {"Properties": {"Events": {QUEUE_EVENT: {"Properties": properties}}}}


def _outputs() -> dict[str, Any]:
    return {
        "TableName": {"Value": {"Ref": TABLE}},
        "TableStreamArn": {"Value": {"Fn::GetAtt": [TABLE, "StreamArn"]}},
        "TopicArn": {"Value": {"Ref": TOPIC}},
        "QueueUrl": {"Value": {"Ref": QUEUE}},
        "DeadLetterQueueUrl": {"Value": {"Ref": DEAD_LETTER_QUEUE}},
        "StreamFailuresQueueUrl": {"Value": {"Ref": STREAM_FAILURES_QUEUE}},
    }


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Adds `extra` to `into` key by key, as Chalice's merge does."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
