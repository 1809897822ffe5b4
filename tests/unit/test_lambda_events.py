"""Unit tests for currencies_local.lambda_events: local service responses must look like Lambda's events."""

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from currencies_local.lambda_events import dynamodb_event, failed_message_ids, sqs_event

STREAM_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/currency/stream/2024-05-01T00:00:00.000"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:currency-consumer"
REGION = "eu-west-1"


def boto3_stream_record(created: Any) -> dict[str, Any]:
    return {
        "eventID": "e1",
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "Keys": {"symbol": {"S": "EUR"}},
            "NewImage": {"symbol": {"S": "EUR"}, "rate": {"N": "1.5"}},
            "SequenceNumber": "100",
        },
    }


def test_dynamodb_event_has_lambda_shape() -> None:
    record = boto3_stream_record(datetime(2024, 1, 1, tzinfo=UTC))
    original = copy.deepcopy(record)
    (converted,) = dynamodb_event([record], STREAM_ARN, REGION)["Records"]
    assert converted["dynamodb"]["ApproximateCreationDateTime"] == 1_704_067_200  # 2024-01-01T00:00:00Z
    assert converted["eventSourceARN"] == STREAM_ARN
    assert converted["eventSource"] == "aws:dynamodb"
    assert converted["awsRegion"] == REGION
    assert (converted["eventID"], converted["eventName"]) == ("e1", "INSERT")
    assert converted["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert converted["dynamodb"]["NewImage"] == record["dynamodb"]["NewImage"]
    assert record == original  # the caller's record is not modified


@given(st.integers(0, 4_102_444_800), st.integers(-12, 14))
def test_creation_time_becomes_epoch_seconds_in_any_zone(epoch: int, offset_hours: int) -> None:
    """boto3 gives a local-zone datetime; Lambda gives epoch seconds of the same instant."""
    zone = timezone(timedelta(hours=offset_hours))
    created = datetime.fromtimestamp(epoch, tz=zone)
    (converted,) = dynamodb_event([boto3_stream_record(created)], STREAM_ARN, REGION)["Records"]
    assert converted["dynamodb"]["ApproximateCreationDateTime"] == epoch


def test_epoch_creation_time_is_kept() -> None:
    (converted,) = dynamodb_event([boto3_stream_record(1_704_067_200.5)], STREAM_ARN, REGION)["Records"]
    assert converted["dynamodb"]["ApproximateCreationDateTime"] == 1_704_067_200.5


def test_record_region_wins_over_default() -> None:
    record = {**boto3_stream_record(0), "awsRegion": "us-east-1"}
    (converted,) = dynamodb_event([record], STREAM_ARN, REGION)["Records"]
    assert converted["awsRegion"] == "us-east-1"


def test_sqs_event_maps_keys() -> None:
    received = {
        "MessageId": "m1",
        "ReceiptHandle": "handle-1",
        "MD5OfBody": "abc",
        "Body": '{"Type": "Notification"}',
        "Attributes": {"ApproximateReceiveCount": "2"},
        "MessageAttributes": {"symbol": {"StringValue": "EUR", "DataType": "String"}},
    }
    (record,) = sqs_event([received], QUEUE_ARN, REGION)["Records"]
    assert record == {
        "messageId": "m1",
        "receiptHandle": "handle-1",
        "body": '{"Type": "Notification"}',
        "attributes": {"ApproximateReceiveCount": "2"},
        "messageAttributes": {"symbol": {"stringValue": "EUR", "dataType": "String"}},
        "md5OfBody": "abc",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    }


def test_sqs_event_defaults_for_missing_optional_keys() -> None:
    (record,) = sqs_event([{"MessageId": "m1", "ReceiptHandle": "h", "Body": "x"}], QUEUE_ARN, REGION)["Records"]
    assert (record["attributes"], record["messageAttributes"], record["md5OfBody"]) == ({}, {}, "")


IDS = ["m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m3"}]}, {"m1", "m3"}),
        ({"batchItemFailures": [{"itemIdentifier": "m9"}]}, set(IDS)),  # not in the batch
        ({"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m9"}]}, set(IDS)),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, set(IDS)),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, set(IDS)),
        ({"batchItemFailures": [{}]}, set(IDS)),
        ({"batchItemFailures": ["m1"]}, set(IDS)),
        ({"batchItemFailures": "m1"}, set(IDS)),
        ({"batchItemFailures": {"itemIdentifier": "m1"}}, set(IDS)),
        ("ok", set(IDS)),
        ([{"itemIdentifier": "m1"}], set(IDS)),
        (42, set(IDS)),
    ],
)
def test_failed_message_ids_follow_lambda_rules(response: Any, failed: set[str]) -> None:
    assert failed_message_ids(response, IDS) == failed


@given(st.lists(st.sampled_from(IDS)))
def test_listed_ids_are_exactly_the_failed_ones(listed: list[str]) -> None:
    response = {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in listed]}
    assert failed_message_ids(response, IDS) == set(listed)
