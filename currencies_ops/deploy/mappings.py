"""Give the deployed event source mappings the settings Chalice cannot set (after `chalice deploy`).

Chalice 1.34 creates the stream and queue mappings with a batch size and nothing else: no
ReportBatchItemFailures, bisecting, retry limit, record age limit or on-failure destination.
`configure_mappings` applies them from `stack` (the template path sets the same ones), changing
only what differs, so it can run after every deploy. A redeploy leaves them in place; it only
sets the batch size and batching window again, from app.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from currencies_ops.deploy.stack import QUEUE_MAPPING, STREAM_MAPPING, StageArns, StageNames

if TYPE_CHECKING:
    import boto3

STREAM_FUNCTION, QUEUE_FUNCTION = "relay_changes", "index_changes"


class MappingMissing(RuntimeError):
    """A function or its mapping is not deployed yet; the message says which command comes first."""


@dataclass(frozen=True)
class MappingChange:
    """One mapping and the settings `configure_mappings` changed on it (empty: already as wanted)."""

    function: str
    source: str
    uuid: str
    changed: dict[str, Any]
    before: dict[str, Any]


def stream_settings(arns: StageArns) -> dict[str, Any]:
    """What the stream mapping must have: failures are reported, bisected, bounded and described to a queue."""
    return {
        **STREAM_MAPPING.api_parameters(),
        "DestinationConfig": {"OnFailure": {"Destination": arns.stream_failures_queue}},
    }


def queue_settings() -> dict[str, Any]:
    """What the queue mapping must have: partial batch responses, and batches above SQS's 10."""
    return {"BatchSize": QUEUE_MAPPING.batch_size, **QUEUE_MAPPING.api_parameters()}


def differing(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
    """The wanted settings the mapping does not have yet (a missing list counts as empty)."""
    changes = {}
    for key, value in wanted.items():
        have, want = current.get(key), value
        if key == "DestinationConfig":
            have = {"OnFailure": (have or {}).get("OnFailure") or {}}
        elif isinstance(value, list):
            have, want = sorted(have or []), sorted(value)
        if have != want:
            changes[key] = value
    return changes


def find_mapping(lambda_client: Any, function_name: str, service: str, stage: str) -> dict[str, Any]:
    """The function's one mapping from a `service` (dynamodb, sqs) event source."""
    try:
        function_arn = lambda_client.get_function(FunctionName=function_name)["Configuration"]["FunctionArn"]
    except lambda_client.exceptions.ResourceNotFoundException as error:
        raise MappingMissing(
            f"function {function_name} is not deployed: run chalice deploy --stage {stage} first"
        ) from error
    # By ARN: AWS matches a name or an ARN, moto only the string the mapping was created with (Chalice: the ARN).
    pages = lambda_client.get_paginator("list_event_source_mappings").paginate(FunctionName=function_arn)
    mappings = [mapping for page in pages for mapping in page["EventSourceMappings"]]
    found = [mapping for mapping in mappings if mapping["EventSourceArn"].split(":")[2] == service]
    if not found:
        raise MappingMissing(
            f"{function_name} has no {service} event source mapping: run chalice deploy --stage {stage} first"
        )
    if len(found) > 1:
        raise MappingMissing(f"{function_name} has {len(found)} {service} event source mappings; expected one")
    return found[0]


def configure_mappings(stage: str, session: boto3.Session) -> list[MappingChange]:
    """Apply the stack's settings to the stage's stream and queue mappings; report what changed."""
    identity = session.client("sts").get_caller_identity()
    names = StageNames(stage)
    arns = StageArns(names, session.region_name or "", identity["Account"], partition=identity["Arn"].split(":")[1])
    lambda_client = session.client("lambda")
    changes = []
    for function, service, wanted in (
        (STREAM_FUNCTION, "dynamodb", stream_settings(arns)),
        (QUEUE_FUNCTION, "sqs", queue_settings()),
    ):
        function_name = names.function_name(function)
        mapping = find_mapping(lambda_client, function_name, service, stage)
        changed = differing(mapping, wanted)
        if changed:
            lambda_client.update_event_source_mapping(UUID=mapping["UUID"], **changed)
        before = {key: mapping.get(key) for key in changed}
        changes.append(MappingChange(function_name, mapping["EventSourceArn"], mapping["UUID"], changed, before))
    return changes
