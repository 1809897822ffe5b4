"""The CloudFormation fragment says what `currencies_ops.deploy.stack` says, and only adds to Chalice's resources."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chalicelib.api.access import GATEWAY_ERROR_CODES
from chalicelib.api.openapi import ERROR_CODE_PATTERN
from currencies_local.pipeline import PROJECT_DIR
from currencies_ops.deploy import template
from currencies_ops.deploy.package_command import credential_free_environment
from currencies_ops.deploy.policies import SearchAccess, for_cloudformation, policy_documents
from currencies_ops.deploy.stack import (
    FUNCTIONS,
    MAX_RECEIVE_COUNT,
    QUEUE_MAPPING,
    QUEUE_VISIBILITY_TIMEOUT_S,
    STREAM_MAPPING,
    StageNames,
)
from tests.cloudformation import references

SEARCH = SearchAccess()


def render(stage: str = "prod", *, deletion_protection: bool = True, **options: Any) -> dict[str, Any]:
    return template.fragment(stage, deletion_protection=deletion_protection, search=SEARCH, **options)["Resources"]


def event_properties(resources: dict[str, Any], function: str, event: str) -> dict[str, Any]:
    return resources[template.FUNCTION_IDS[function]]["Properties"]["Events"][event]["Properties"]


def test_the_stream_mapping_gets_every_setting_of_stack_py() -> None:
    properties = event_properties(render(), "relay_changes", template.STREAM_EVENT)
    expected = {
        "Stream": {"Fn::GetAtt": [template.TABLE, "StreamArn"]},
        "BatchSize": STREAM_MAPPING.batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": STREAM_MAPPING.bisect_batch_on_function_error,
        "MaximumRetryAttempts": STREAM_MAPPING.maximum_retry_attempts,
        "MaximumRecordAgeInSeconds": STREAM_MAPPING.maximum_record_age_s,
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [template.STREAM_FAILURES_QUEUE, "Arn"]}}},
    }
    assert properties == expected
    assert properties.items() >= STREAM_MAPPING.api_parameters().items()


def test_the_queue_mapping_gets_every_setting_and_leaves_chalices_queue_alone() -> None:
    resources = render()
    properties = event_properties(resources, "index_changes", template.QUEUE_EVENT)
    assert properties == {
        "BatchSize": QUEUE_MAPPING.batch_size,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumBatchingWindowInSeconds": QUEUE_MAPPING.maximum_batching_window_s,
    }
    # Replacing Chalice's {"Fn::Sub": ...} would merge into an invalid {Fn::Sub, Fn::GetAtt}.
    assert "Queue" not in properties
    # A batch above SQS's 10 messages needs a batching window.
    assert QUEUE_MAPPING.batch_size <= 10 or properties["MaximumBatchingWindowInSeconds"] >= 1


def test_the_consumer_waits_for_its_queue() -> None:
    consumer = render()[template.FUNCTION_IDS["index_changes"]]
    assert template.QUEUE in references(consumer)


def test_the_table_is_on_demand_with_both_images_and_point_in_time_recovery() -> None:
    table = render()[template.TABLE]
    assert table["Type"] == "AWS::DynamoDB::Table"
    properties = table["Properties"]
    assert properties["TableName"] == StageNames("prod").table
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["KeySchema"] == [{"AttributeName": "symbol", "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": "symbol", "AttributeType": "S"}]


@pytest.mark.parametrize("protect", [True, False])
def test_deletion_protection_only_when_asked(protect: bool) -> None:
    table = render("dev", deletion_protection=protect)[template.TABLE]
    assert table["Properties"]["DeletionProtectionEnabled"] is protect
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == ("Retain" if protect else "Delete")


def test_the_queue_redrives_to_the_dead_letter_queue_after_max_receive_count() -> None:
    resources = render()
    queue = resources[template.QUEUE]["Properties"]
    assert queue["QueueName"] == StageNames("prod").queue
    assert queue["VisibilityTimeout"] == QUEUE_VISIBILITY_TIMEOUT_S
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [template.DEAD_LETTER_QUEUE, "Arn"]},
        "maxReceiveCount": MAX_RECEIVE_COUNT,
    }
    assert resources[template.DEAD_LETTER_QUEUE]["Properties"]["QueueName"] == StageNames("prod").dead_letter_queue
    failures = resources[template.STREAM_FAILURES_QUEUE]["Properties"]["QueueName"]
    assert failures == StageNames("prod").stream_failures_queue


def test_the_queue_policy_lets_only_the_stages_topic_send() -> None:
    resources = render()
    policy = resources[template.QUEUE_POLICY]["Properties"]
    assert policy["Queues"] == [{"Ref": template.QUEUE}]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": [template.QUEUE, "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": template.TOPIC}}}
    subscription = resources[template.SUBSCRIPTION]["Properties"]
    assert subscription == {"TopicArn": {"Ref": template.TOPIC}, "Protocol": "sqs", "Endpoint": policy_resource(policy)}


def policy_resource(policy: dict[str, Any]) -> Any:
    return policy["PolicyDocument"]["Statement"][0]["Resource"]


def test_every_function_reads_the_created_resources_from_cloudformation() -> None:
    resources = render()
    for function in FUNCTIONS:
        variables = resources[template.FUNCTION_IDS[function]]["Properties"]["Environment"]["Variables"]
        assert variables["CURRENCIES_STREAM_ARN"] == {"Fn::GetAtt": [template.TABLE, "StreamArn"]}
        assert variables["CURRENCIES_TOPIC_ARN"] == {"Ref": template.TOPIC}
        assert variables["CURRENCIES_DLQ_URL"] == {"Ref": template.DEAD_LETTER_QUEUE}
        assert variables["CURRENCIES_TABLE"] == {"Ref": template.TABLE}


def test_each_role_gets_its_functions_policy_with_placeholders_cloudformation_resolves() -> None:
    resources = render("prod")
    documents = policy_documents(template.stage_arns("prod"), SEARCH)
    for function in FUNCTIONS:
        [policy] = resources[template.ROLE_IDS[function]]["Properties"]["Policies"]
        assert policy["PolicyDocument"] == for_cloudformation(documents[function])
        text = json.dumps(policy["PolicyDocument"])
        assert "123456789012" not in text
        assert "${AWS::AccountId}" in text


def test_only_the_functions_chalice_emits_are_named() -> None:
    """Naming a function Chalice did not create would merge into a resource without a Type."""
    resources = render(functions=("api_handler", "relay_changes", "index_changes"))
    assert template.FUNCTION_IDS["tidy_metrics"] not in resources
    assert template.ROLE_IDS["tidy_metrics"] not in resources
    without_consumer = render(functions=("api_handler", "relay_changes"))
    assert template.FUNCTION_IDS["index_changes"] not in without_consumer
    with pytest.raises(ValueError, match="unknown"):
        render(functions=("api_handler", "send_emails"))


def test_the_janitor_is_deployed_only_with_a_pushgateway() -> None:
    assert "tidy_metrics" not in template.deployed_functions({})
    assert "tidy_metrics" in template.deployed_functions({"CURRENCIES_PUSHGATEWAY_URL": "http://gateway:9091"})


def test_every_reference_resolves_within_the_fragment_or_to_chalices_resources() -> None:
    resources = render()
    known = set(resources) | set(template.FUNCTION_IDS.values())
    outputs = template.fragment("prod", deletion_protection=True, search=SEARCH)["Outputs"]
    assert references(resources) | references(outputs) <= known
    created = {name for name, body in resources.items() if "Type" in body}
    assert created == {
        template.TABLE,
        template.TOPIC,
        template.QUEUE,
        template.DEAD_LETTER_QUEUE,
        template.STREAM_FAILURES_QUEUE,
        template.SUBSCRIPTION,
        template.QUEUE_POLICY,
    }


def test_the_chalice_subprocess_gets_a_region_and_no_credentials() -> None:
    base = {
        "PATH": "/usr/bin",
        "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_PROFILE": "admin",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "CURRENCIES_WRITE_AUTH": "none",
    }
    env = credential_free_environment("eu-central-1", base)
    assert "CURRENCIES_WRITE_AUTH" not in env  # the stage's config.json decides what is packaged
    assert env["PATH"] == "/usr/bin"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "eu-central-1"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} & set(env)
    assert "AWS_ENDPOINT_URL" not in env
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == env["AWS_CONFIG_FILE"]


def test_the_prod_stage_config_names_the_stack_and_batches_as_its_mapping() -> None:
    """app.py sets the queue mapping's batch from config.json on every deploy: it must agree with the fragment."""
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    variables = config["stages"]["prod"]["environment_variables"]
    names = StageNames("prod")
    assert variables["CURRENCIES_TABLE"] == names.table
    assert variables["CURRENCIES_QUEUE"] == names.queue
    assert variables["CURRENCIES_TOPIC"] == names.topic
    assert variables["CURRENCIES_BATCH_SIZE"] == str(QUEUE_MAPPING.batch_size)
    assert variables["CURRENCIES_BATCH_WINDOW_S"] == str(QUEUE_MAPPING.maximum_batching_window_s)


def test_api_gateways_own_refusals_get_the_apis_error_body() -> None:
    """`{"error": CODE, "message": TEXT}`, as every handler error; the message is API Gateway's, quoted by it."""
    responses = render()[template.REST_API]["Properties"]["DefinitionBody"]["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == set(GATEWAY_ERROR_CODES)
    assert {"UNAUTHORIZED", "MISSING_AUTHENTICATION_TOKEN", "ACCESS_DENIED", "DEFAULT_4XX", "DEFAULT_5XX"} <= set(
        responses
    )
    for response_type, response in responses.items():
        body = response["responseTemplates"]["application/json"]
        # What API Gateway makes of it: $context.error.messageString is the message in quotes.
        rendered = json.loads(body.replace("$context.error.messageString", json.dumps('say "why"')))
        assert rendered == {"error": GATEWAY_ERROR_CODES[response_type], "message": 'say "why"'}
        assert re.fullmatch(ERROR_CODE_PATTERN, rendered["error"])
