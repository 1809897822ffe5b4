"""Without ReportBatchItemFailures on the mapping, the consumer must not let Lambda drop failed messages.

Runs the deployed handler (`app.index_changes`) on a real moto queue and a real engine
with `partial_batch_response` off, as after a plain `chalice deploy`.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import replace
from decimal import Decimal

import boto3
import pytest
from chalice.local import LambdaContext

from chalicelib.consumer.sqs_batch import BatchIncomplete
from currencies_local.lambda_events import sqs_event
from currencies_local.moto import REGION
from currencies_local.pipeline import LocalPipeline
from currencies_local.synthetic import TableModel
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually


def test_handled_messages_are_deleted_and_failed_ones_come_back(
    pipeline: LocalPipeline, search: EngineUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = importlib.import_module("app")
    monkeypatch.setattr(app, "settings", replace(app.settings, partial_batch_response=False))
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"settle-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "1"})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    table = TableModel()
    table.put(f"K{uuid.uuid4().hex[:8]}", Decimal("2.5"))
    (good,) = table.changes()
    bad = good._replace(id=uuid.uuid4().hex, data={"symbol": f"X{uuid.uuid4().hex[:8]}", "rate": "1e400"}, new=None)
    ids = {name: sqs.send_message(QueueUrl=url, MessageBody=c.to_json())["MessageId"] for name, c in
           (("good", good), ("bad", bad))}  # fmt: skip

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(received) == 2
    with pytest.raises(BatchIncomplete, match="1 of 2"):
        app.index_changes(sqs_event(received, arn, REGION), LambdaContext("index_changes", 512, 60_000))

    assert search.rates_for([good.symbol]) == {good.symbol: "2.5"}
    again = eventually(
        lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []),
        bool,
    )
    assert [m["MessageId"] for m in again] == [ids["bad"]]
