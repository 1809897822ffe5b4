"""`currencies redrive` against the running pipeline: letters made by `dead_letter` go back where they belong.

The dead-letter queue is shared with other tests of the session, so this module's letters
carry a reason of their own and every run chooses them with `--reason`; the assertions
look at those letters only. The command runs in-process through the `currencies` group,
configured by the pipeline's own CURRENCIES_* settings.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from click.testing import CliRunner

from chalicelib.deadletter import dead_letter
from chalicelib.stream.changes import change_from_record
from currencies_local.cli import main
from currencies_local.pipeline import LocalPipeline
from currencies_local.synthetic import TableModel
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually


def fresh_symbols(search: EngineUnderTest, count: int) -> list[str]:
    """Three-letter symbols no document has yet (lower case: other tests use upper-case ones)."""
    rng = random.SystemRandom()
    while True:
        symbols = ["".join(rng.choice(string.ascii_lowercase) for _ in range(3)) for _ in range(count)]
        if len(set(symbols)) == count and search.rates_for(symbols) == {}:
            return symbols


def envelope(message: str, topic_arn: str) -> str:
    """The SNS envelope around a change, as the consumer's queue delivers it."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic_arn,
            "Message": message,
            "Timestamp": datetime.now(UTC).isoformat(),
        }
    )


def redrive(pipeline: LocalPipeline, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(main, ["redrive", "--json", *args], env=pipeline.environment)
    return result.exit_code, json.loads(result.stdout)


def my_groups(report: dict[str, Any], reason: str) -> dict[tuple[str, str], int]:
    """(source, where) -> letters of this test's groups."""
    return {(g["source"], g["where"]): g["letters"] for g in report["groups"] if g["reason"] == reason}


def remove_letters(pipeline: LocalPipeline, reason: str) -> None:
    """Delete this test's letters left in the queue; the others are made visible again."""
    assert pipeline.resources is not None
    sqs, url = boto3.client("sqs"), pipeline.resources.dlq_url
    others = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
        "Messages", []
    ):
        for message in messages:
            if f'"reason":{json.dumps(reason)}' in message["Body"]:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                others.append(message["ReceiptHandle"])
    for handle in others:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)


def test_redrive_sends_fixed_letters_back_and_keeps_the_one_without_payload(
    pipeline: LocalPipeline, search: EngineUnderTest
) -> None:
    assert pipeline.resources is not None
    resources = pipeline.resources
    sqs = boto3.client("sqs")
    reason = f"redrive test {uuid.uuid4().hex}"
    consumer_symbol, stream_symbol, lost_symbol = fresh_symbols(search, 3)
    table = TableModel()
    table.put(consumer_symbol, Decimal("1.25"))
    table.put(stream_symbol, Decimal("2.50"))
    table.put(lost_symbol, Decimal("3"))
    consumer_record, stream_record, lost_record = table.records
    # (c) a record too large to keep: its letter goes without the payload
    lost_record["dynamodb"]["NewImage"]["note"] = {"S": "x" * 300_000}
    change = change_from_record(consumer_record, datetime.now(UTC))
    # (a) a change the consumer gave up on earlier, fine now; (b) a stream record the relay gave up on
    dead_letter(
        sqs, resources.dlq_url, envelope(change.to_json(), resources.topic_arn), reason=reason, source="consumer"
    )
    dead_letter(sqs, resources.dlq_url, json.dumps(stream_record), reason=reason, source="stream")
    dead_letter(sqs, resources.dlq_url, json.dumps(lost_record), reason=reason, source="stream")
    try:
        started = time.monotonic()
        code, dry = redrive(pipeline, "--dry-run", "--reason", reason)
        print(f"dry run: {dry['read']} letters read in {time.monotonic() - started:.2f} s")
        assert code == 1, dry
        assert dry["chosen"] == 3
        assert my_groups(dry, reason) == {("consumer", "queue"): 1, ("stream", "topic"): 1, ("stream", "stays"): 1}
        assert dry["resent"] == 0
        time.sleep(2)  # had anything been sent, the pipeline would have indexed it by now
        assert search.rates_for([consumer_symbol, stream_symbol]) == {}
        code, shown = redrive(pipeline)
        assert code == 0, shown
        assert my_groups(shown, reason) == {("consumer", ""): 1, ("stream", ""): 2}

        started = time.monotonic()
        code, done = redrive(pipeline, "--reason", reason)
        print(f"redrive: {done['read']} letters read, {done['resent']} re-sent in {time.monotonic() - started:.2f} s")
        assert code == 1, done
        assert done["resent"] == 2
        [stays] = done["not_resent"]
        assert stays["example"].startswith(lost_symbol)
        assert "no payload" in stays["problem"]
        assert lost_record["dynamodb"]["SequenceNumber"] in stays["problem"]
        indexed = eventually(
            lambda: search.rates_for([consumer_symbol, stream_symbol, lost_symbol]), lambda rates: len(rates) == 2
        )
        assert indexed == {consumer_symbol: "1.25", stream_symbol: "2.5"}
        code, after = redrive(pipeline)
        assert my_groups(after, reason) == {("stream", ""): 1}
    finally:
        remove_letters(pipeline, reason)
