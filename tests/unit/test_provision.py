"""What `currencies provision` writes into a stage's config, and how `configure-mappings` decides what to change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from currencies_ops.deploy.mappings import differing, queue_settings, stream_settings
from currencies_ops.deploy.provision import (
    Created,
    _same_attribute,
    read_stage_environment,
    stage_environment,
    with_stage_environment,
)
from currencies_ops.deploy.stack import MAX_RECEIVE_COUNT, QUEUE_MAPPING, STREAM_MAPPING, StageArns, StageNames

NAMES = StageNames("qa")
CREATED = Created(
    table_name="currency-qa",
    table_arn="arn:aws:dynamodb:eu-west-1:111122223333:table/currency-qa",
    stream_arn="arn:aws:dynamodb:eu-west-1:111122223333:table/currency-qa/stream/2026-11-27T00:00:00.000",
    topic_arn="arn:aws:sns:eu-west-1:111122223333:currency-qa-topic",
    queue_url="https://sqs.eu-west-1.amazonaws.com/111122223333/currency-qa-queue",
    queue_arn="arn:aws:sqs:eu-west-1:111122223333:currency-qa-queue",
    dlq_url="https://sqs.eu-west-1.amazonaws.com/111122223333/currency-qa-queue-dlq",
    dlq_arn="arn:aws:sqs:eu-west-1:111122223333:currency-qa-queue-dlq",
    stream_failures_url="https://sqs.eu-west-1.amazonaws.com/111122223333/currency-qa-stream-failures",
    stream_failures_arn="arn:aws:sqs:eu-west-1:111122223333:currency-qa-stream-failures",
)


def test_the_stage_environment_names_this_stages_resources() -> None:
    environment = stage_environment(NAMES, CREATED)
    assert environment == {
        "CURRENCIES_TABLE": "currency-qa",
        "CURRENCIES_STREAM_ARN": CREATED.stream_arn,
        "CURRENCIES_TOPIC_ARN": CREATED.topic_arn,
        "CURRENCIES_TOPIC": "currency-qa-topic",
        "CURRENCIES_QUEUE": "currency-qa-queue",
        "CURRENCIES_DLQ_URL": CREATED.dlq_url,
        "CURRENCIES_MAX_RECEIVES": str(MAX_RECEIVE_COUNT),
        "CURRENCIES_EVENTS_INDEX": "currency-qa-events",
        "CURRENCIES_RATES_INDEX": "currency-qa-rates",
        "CURRENCIES_PARTIAL_BATCH_RESPONSE": "true",
        "CURRENCIES_BATCH_SIZE": str(QUEUE_MAPPING.batch_size),
        "CURRENCIES_BATCH_WINDOW_S": str(QUEUE_MAPPING.maximum_batching_window_s),
    }


def test_writing_the_environment_keeps_the_users_settings_and_other_stages() -> None:
    config = {
        "app_name": "currencies",
        "environment_variables": {"CURRENCIES_BATCH_SIZE": "10"},
        "stages": {
            "qa": {
                "api_gateway_stage": "v1",
                "environment_variables": {
                    "CURRENCIES_SEARCH_URL": "https://search.example:443",
                    "CURRENCIES_SEARCH_AUTH": "basic",
                    "CURRENCIES_STREAM_ARN": "arn:aws:dynamodb:eu-west-1:111122223333:table/currency-qa/stream/OLD",
                },
            },
            "local": {"environment_variables": {"CURRENCIES_WRITE_AUTH": "none"}},
        },
    }
    original = json.loads(json.dumps(config))
    updated = with_stage_environment(config, "qa", stage_environment(NAMES, CREATED))
    assert config == original  # the caller's dict is left alone
    variables = updated["stages"]["qa"]["environment_variables"]
    assert variables["CURRENCIES_SEARCH_URL"] == "https://search.example:443"
    assert variables["CURRENCIES_SEARCH_AUTH"] == "basic"
    assert variables["CURRENCIES_STREAM_ARN"] == CREATED.stream_arn  # a stale ARN is replaced
    assert updated["stages"]["qa"]["api_gateway_stage"] == "v1"
    assert updated["stages"]["local"] == original["stages"]["local"]
    assert updated["environment_variables"] == original["environment_variables"]


def test_a_new_stage_gets_an_api_gateway_stage_and_iam_protected_writes() -> None:
    updated = with_stage_environment({"stages": {}}, "qa", {"CURRENCIES_TABLE": "currency-qa"})
    assert updated["stages"]["qa"] == {
        "api_gateway_stage": "api",
        "environment_variables": {"CURRENCIES_WRITE_AUTH": "iam", "CURRENCIES_TABLE": "currency-qa"},
    }


def test_the_users_choice_of_write_auth_stays() -> None:
    config = {"stages": {"qa": {"environment_variables": {"CURRENCIES_WRITE_AUTH": "cognito"}}}}
    updated = with_stage_environment(config, "qa", {"CURRENCIES_TABLE": "currency-qa"})
    assert updated["stages"]["qa"]["environment_variables"]["CURRENCIES_WRITE_AUTH"] == "cognito"


def test_a_stage_environment_is_the_top_levels_overridden_by_the_stages(tmp_path: Path) -> None:
    (tmp_path / ".chalice").mkdir()
    config = {
        "environment_variables": {"A": "top", "B": "top"},
        "stages": {"qa": {"environment_variables": {"B": "stage"}}},
    }
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    assert read_stage_environment(tmp_path, "qa") == {"A": "top", "B": "stage"}
    assert read_stage_environment(tmp_path, "other") == {"A": "top", "B": "top"}


REDRIVE = '{"deadLetterTargetArn": "arn:x", "maxReceiveCount": "5"}'


@pytest.mark.parametrize(
    ("current", "wanted", "same"),
    [
        ('{"deadLetterTargetArn": "arn:x", "maxReceiveCount": 5}', REDRIVE, True),
        ('{"deadLetterTargetArn": "arn:x", "maxReceiveCount": 3}', REDRIVE, False),
        ('{"deadLetterTargetArn": "arn:y", "maxReceiveCount": "5"}', REDRIVE, False),
        ("360", "360", True),
        ("5", "360", False),
        (None, "360", False),
    ],
)  # fmt: skip
def test_queue_attributes_compare_as_sqs_means_them(current: str | None, wanted: str, same: bool) -> None:
    assert _same_attribute(current, wanted) is same


ARNS = StageArns(NAMES, "eu-west-1", "111122223333")


def test_the_stream_mapping_wants_the_stack_settings_and_the_failures_queue() -> None:
    wanted = stream_settings(ARNS)
    assert wanted["DestinationConfig"] == {"OnFailure": {"Destination": ARNS.stream_failures_queue}}
    assert wanted["MaximumRetryAttempts"] == STREAM_MAPPING.maximum_retry_attempts
    assert wanted["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_the_queue_mapping_wants_a_batch_above_ten_with_a_window() -> None:
    wanted = queue_settings()
    assert wanted["BatchSize"] == QUEUE_MAPPING.batch_size > 10
    assert wanted["MaximumBatchingWindowInSeconds"] >= 1


def test_a_fresh_chalice_mapping_needs_every_setting() -> None:
    chalice_made = {
        "UUID": "u",
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 0,
        "StartingPosition": "TRIM_HORIZON",
    }
    assert set(differing(chalice_made, stream_settings(ARNS))) == {
        "FunctionResponseTypes",
        "BisectBatchOnFunctionError",
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "DestinationConfig",
    }


def test_a_configured_mapping_needs_nothing() -> None:
    configured = {
        "BatchSize": 100,
        "StartingPosition": "TRIM_HORIZON",
        **stream_settings(ARNS),
        "DestinationConfig": {"OnFailure": {"Destination": ARNS.stream_failures_queue}, "OnSuccess": {}},
    }
    assert differing(configured, stream_settings(ARNS)) == {}


def test_only_the_settings_that_differ_are_changed() -> None:
    redeployed = {**queue_settings(), "BatchSize": 10, "MaximumBatchingWindowInSeconds": 0}
    assert differing(redeployed, queue_settings()) == {
        "BatchSize": QUEUE_MAPPING.batch_size,
        "MaximumBatchingWindowInSeconds": QUEUE_MAPPING.maximum_batching_window_s,
    }
    elsewhere = {**stream_settings(ARNS), "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:x:1:other"}}}
    assert set(differing(elsewhere, stream_settings(ARNS))) == {"DestinationConfig"}
    assert differing({**stream_settings(ARNS), "FunctionResponseTypes": []}, stream_settings(ARNS)) == {
        "FunctionResponseTypes": ["ReportBatchItemFailures"]
    }
