"""The stream handler benchmark's pure parts: the records it feeds, how it counts SNS calls, what it reports."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bench.report import machine
from bench.stream_handler import (
    BATCH_SIZE,
    calls_per_record,
    count_calls,
    markdown,
    naive,
    ours,
    stream_records,
    summarise,
)

TOPIC = "arn:aws:sns:us-east-1:123456789012:bench"


def test_stream_records_are_lambda_shaped_and_distinct() -> None:
    records = stream_records(250)
    assert len(records) == 250
    assert len({record["eventID"] for record in records}) == 250
    for record in records:
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventSourceARN"].startswith("arn:aws:dynamodb:")
        assert record["eventName"] in {"INSERT", "MODIFY", "REMOVE"}
        assert "SequenceNumber" in record["dynamodb"]


@pytest.fixture
def sns() -> Iterator[Any]:
    """An SNS client on moto in this process (it answers in `before-send`, after the counting hook)."""
    with mock_aws():
        client = boto3.client("sns", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        client.create_topic(Name="bench")
        yield client


@pytest.mark.parametrize("records", [1, 95, 250])
def test_ours_publishes_batches_of_ten_per_mapping_batch_and_every_call_is_counted(sns: Any, records: int) -> None:
    counted = count_calls(sns)
    assert ours(stream_records(records), sns, TOPIC) == records
    batches = [min(BATCH_SIZE, records - start) for start in range(0, records, BATCH_SIZE)]
    assert counted == {"PublishBatch": sum(math.ceil(size / 10) for size in batches)}


def test_naive_makes_one_publish_per_record(sns: Any) -> None:
    counted = count_calls(sns)
    assert naive(stream_records(7), sns, TOPIC) == 7
    assert counted == {"Publish": 7}


def _run(calls: int, records_per_s: float) -> dict[str, float]:
    return {"seconds": 1.0, "records_per_s": records_per_s, "sns_calls": calls, "cpu_us_per_record": 100.0}


def test_summary_and_markdown_report_the_measured_calls_and_the_target() -> None:
    runs = {"ours": [_run(30, 900.0), _run(30, 1100.0)], "naive": [_run(300, 200.0), _run(300, 220.0)]}
    result = {
        "records": 300,
        "batch_size": BATCH_SIZE,
        "repetitions": 2,
        "mode": "quick",
        "machine": machine(),
        "variants": summarise(runs),
    }
    assert calls_per_record(result, "ours") == pytest.approx(0.1)
    assert calls_per_record(result, "naive") == pytest.approx(1.0)
    assert result["variants"]["ours"]["records_per_s"] == {"median": 1000.0, "min": 900.0, "max": 1100.0, "runs": 2}
    text = markdown(result, "python -m bench.stream_handler")
    assert "| 0.100 | 1,000 [900-1,100] |" in text
    assert "| 1.000 | 210 [200-220] |" in text
    assert "calls per record: met" in text
    assert "`python -m bench.stream_handler`" in text

    runs["ours"] = [_run(31, 900.0), _run(31, 1000.0)]
    result["variants"] = summarise(runs)
    assert "calls per record: missed" in markdown(result, "x")
