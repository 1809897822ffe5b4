"""A real moto server for the store's tests: fresh streamed tables, their changes as the stream handler sees them.

`moto_server` is a module fixture (import it into the test module); each test makes
its own table, so tests and hypothesis examples share nothing.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.stream.changes import Change, change_from_record
from currencies_local.lambda_events import dynamodb_event
from currencies_local.moto import REGION, aws_environment, start_moto
from currencies_local.processes import free_port

_table_numbers = itertools.count()


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """A moto server of this module's own, with every boto3 client of the process pointed at it."""
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="currencies-store-test-"))
    server = start_moto("127.0.0.1", port, log_dir)
    url = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_environment(url).items():
            patch.setenv(name, value)
        yield url
    server.stop()


class StreamedTable:
    """A fresh `currency`-shaped table with a NEW_AND_OLD_IMAGES stream, as provisioned for the pipeline."""

    def __init__(self, endpoint_url: str) -> None:
        self.name = f"currency-{next(_table_numbers)}"
        client = boto3.client("dynamodb", endpoint_url=endpoint_url)
        self.stream_arn: str = client.create_table(
            TableName=self.name,
            AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]["LatestStreamArn"]
        self.table = boto3.resource("dynamodb", endpoint_url=endpoint_url).Table(self.name)
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint_url)
        self._client = client

    def records(self) -> list[dict[str, Any]]:
        """Every stream record so far, in stream order, shaped as Lambda hands them to the stream handler."""
        shards = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        assert len(shards) == 1, "moto keeps one shard per table; several would each need their own order"
        iterator = self._streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[dict[str, Any]] = []
        while iterator:
            response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            records += response["Records"]
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
        event: dict[str, Any] = dynamodb_event(records, self.stream_arn, REGION)
        return list(event["Records"])

    def changes(self) -> list[Change]:
        """The change messages the stream handler would publish, in stream order."""
        now = datetime.now(UTC)
        return [change_from_record(record, now) for record in self.records()]

    def drop(self) -> None:
        self._client.delete_table(TableName=self.name)
