"""The stream handler core (relay) with fake SNS and SQS clients that enforce AWS's limits.

`run_mapping` invokes the relay as a DynamoDB event source mapping with
ReportBatchItemFailures does: after a partial batch response it resumes at the
record named, and it never hands the records before it out again.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.deadletter import DeadLetter, dead_letter
from chalicelib.observability.metrics import REGISTRY
from chalicelib.stream.bus import Retry
from chalicelib.stream.relay import Unpublished, relay
from currencies_local.synthetic import TableModel
from tests.unit.aws_fakes import LIMIT_BYTES, FakeSns, FakeSqs, message_size

TOPIC = "arn:aws:sns:us-east-1:123456789012:currency-topic"
RETRY = Retry(sleep=lambda _: None)
RETRYABLE = ("InternalError", "try again", False)
REFUSED = ("InvalidParameter", "Invalid parameter: Message", True)


def records(writes: int) -> list[dict[str, Any]]:
    table = TableModel()
    for n in range(writes):
        table.put(f"S{n % 7}", Decimal(n + 1))
    return table.records


def broken(record: dict[str, Any]) -> dict[str, Any]:
    """The same record (same id and sequence number) in a shape no writer of ours produces."""
    copy = json.loads(json.dumps(record))
    copy["dynamodb"]["NewImage"]["symbol"] = {"M": {"nested": {"L": []}}}
    return copy


def huge(record: dict[str, Any], note_bytes: int = 300_000) -> dict[str, Any]:
    """The same record with an attribute that makes it larger than SNS or SQS would take."""
    copy = json.loads(json.dumps(record))
    copy["dynamodb"]["NewImage"]["note"] = {"S": "x" * note_bytes}
    return copy


def queue(sqs: FakeSqs) -> DeadLetter:
    """The stream's dead-letter queue as `clients.dead_letter_queue("stream")` makes it."""
    return lambda body, reason: dead_letter(sqs, "dlq-url", body, reason=reason, source="stream")


def run_mapping(batch: list[dict[str, Any]], sns: FakeSns, dlq: DeadLetter | None, invocations: int = 30) -> int:
    """Invoke the relay until the batch is done, resuming where each partial response says; returns invocations."""
    pending = list(batch)
    done: dict[str, int] = {}
    for invocation in range(1, invocations + 1):
        response = relay(pending, sns=sns, topic_arn=TOPIC, dead_letter=dlq, retry=RETRY).batch_response(partial=True)
        sequences = [record["dynamodb"]["SequenceNumber"] for record in pending]
        start = (
            sequences.index(response["batchItemFailures"][0]["itemIdentifier"])
            if response["batchItemFailures"]
            else len(pending)
        )
        done |= {record["eventID"]: sns.attempts[record["eventID"]] for record in pending[:start]}
        pending = pending[start:]
        if not pending:
            # A record before the point the mapping resumed at is never sent again.
            assert {event_id: sns.attempts[event_id] for event_id in done} == done
            return invocation
    raise AssertionError(f"{len(pending)} records still pending after {invocations} invocations")


def stream_records(outcome: str, event_type: str = "INSERT") -> float:
    labels = {"event_type": event_type, "outcome": outcome}
    return REGISTRY.get_sample_value("currencies_stream_records_total", labels) or 0.0


def test_every_record_is_published_in_order() -> None:
    sns, batch = FakeSns(), records(12)
    report = relay(batch, sns=sns, topic_arn=TOPIC)
    assert report.counts == {"published": 12}
    assert report.batch_response(partial=True) == {"batchItemFailures": []}
    assert sns.published == [record["eventID"] for record in batch]


def test_an_unconvertible_record_is_dead_lettered_and_the_rest_published() -> None:
    sns, sqs = FakeSns(), FakeSqs()
    batch = records(3)
    batch[0] = broken(batch[0])
    report = relay(batch, sns=sns, topic_arn=TOPIC, dead_letter=queue(sqs))
    assert report.counts == {"published": 2, "dead_lettered": 1}
    (letter,) = sqs.letters()
    assert letter["source"] == "stream"
    assert "symbol" in letter["reason"]
    assert json.loads(letter["payload"]) == batch[0]
    assert letter["event_id"] == batch[0]["eventID"]
    assert letter["sequence"] == batch[0]["dynamodb"]["SequenceNumber"]
    assert sns.published == [batch[1]["eventID"], batch[2]["eventID"]]


def test_an_oversized_record_is_dead_lettered_as_its_identifiers_and_does_not_block_the_batch() -> None:
    """A 300 KB item written outside the API: too large for SNS, and for SQS as it is."""
    sns, sqs = FakeSns(), FakeSqs()
    batch = records(3)
    batch[1] = huge(batch[1])
    report = relay(batch, sns=sns, topic_arn=TOPIC, dead_letter=queue(sqs))
    assert report.counts == {"published": 2, "dead_lettered": 1}
    assert report.batch_response(partial=True) == {"batchItemFailures": []}
    (message,) = sqs.messages
    assert message_size(message["Body"], message["MessageAttributes"]) <= LIMIT_BYTES
    letter = json.loads(message["Body"])
    assert letter["payload"] is None
    assert letter["keys"] == batch[1]["dynamodb"]["Keys"]
    assert letter["event_id"] == batch[1]["eventID"]
    assert letter["sequence"] == batch[1]["dynamodb"]["SequenceNumber"]
    assert letter["event_name"] == batch[1]["eventName"]
    assert letter["size"] > 300_000
    assert "bytes" in letter["reason"]
    assert message["MessageAttributes"]["source"]["StringValue"] == "stream"


@pytest.mark.parametrize("dlq", ["refusing", "missing"])
def test_a_record_the_dead_letter_queue_will_not_take_is_logged_whole_and_counted(
    dlq: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing blocks the shard and nothing is lost silently: the record is in an ERROR log line."""
    sns, sqs = FakeSns(), FakeSqs(refuse=[True, True])
    batch = records(3)
    batch[2] = broken(batch[2])
    before = stream_records("dead_letter_failed", batch[2]["eventName"])
    with caplog.at_level(logging.ERROR, logger="chalicelib.stream.relay"):
        report = relay(batch, sns=sns, topic_arn=TOPIC, dead_letter=queue(sqs) if dlq == "refusing" else None)
    assert report.counts == {"published": 2, "dead_letter_failed": 1}
    assert report.batch_response(partial=True) == {"batchItemFailures": []}
    assert stream_records("dead_letter_failed", batch[2]["eventName"]) - before == 1
    (line,) = [r for r in caplog.records if hasattr(r, "record")]
    assert line.levelno == logging.ERROR
    assert json.loads(line.record) == batch[2]  # type: ignore[attr-defined]
    assert sqs.attempts == (2 if dlq == "refusing" else 0)


def test_one_failed_entry_republishes_only_itself() -> None:
    """25 changes with one entry failing once: 25 publishes plus one retry, not the whole batch again."""
    batch = records(25)
    failing = batch[13]["eventID"]
    sns = FakeSns(fail=lambda cid, attempt: RETRYABLE if cid == failing and attempt == 1 else None)
    assert run_mapping(batch, sns, None) == 1
    assert sns.sent == 26
    assert Counter(sns.published) == Counter(record["eventID"] for record in batch)


def test_a_change_sns_refuses_is_dead_lettered_with_the_sns_reason() -> None:
    batch = records(25)
    refused = batch[4]["eventID"]
    sns, sqs = FakeSns(fail=lambda cid, attempt: REFUSED if cid == refused else None), FakeSqs()
    report = relay(batch, sns=sns, topic_arn=TOPIC, dead_letter=queue(sqs), retry=RETRY)
    assert report.counts == {"published": 24, "dead_lettered": 1}
    assert report.batch_response(partial=True) == {"batchItemFailures": []}
    assert sns.sent == 25
    (letter,) = sqs.letters()
    assert letter["reason"] == "SNS refused the change: InvalidParameter: Invalid parameter: Message"
    assert json.loads(letter["payload"]) == batch[4]


def test_a_failure_that_persists_names_the_first_unpublished_record() -> None:
    batch = records(25)
    stuck = batch[13]["eventID"]
    sns = FakeSns(fail=lambda cid, attempt: RETRYABLE if cid == stuck else None)
    report = relay(batch, sns=sns, topic_arn=TOPIC, retry=RETRY)
    sequence = batch[13]["dynamodb"]["SequenceNumber"]
    assert report.batch_response(partial=True) == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    assert report.counts == {"published": 19, "failed": 6}
    assert report.retry_from == sequence
    with pytest.raises(Unpublished, match=sequence):  # a mapping without partial batch responses
        report.batch_response(partial=False)


def test_a_bad_record_after_the_resume_point_is_dead_lettered_once() -> None:
    """Records the mapping hands out again are left for that retry, dead-lettering included."""
    batch = records(25)
    batch[22] = broken(batch[22])
    stuck = batch[13]["eventID"]
    sns, sqs = FakeSns(fail=lambda cid, attempt: RETRYABLE if cid == stuck and attempt <= 4 else None), FakeSqs()
    assert run_mapping(batch, sns, queue(sqs)) == 2
    assert [letter["event_id"] for letter in sqs.letters()] == [batch[22]["eventID"]]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["good", "good", "good", "broken", "huge"]),
            st.one_of(st.just("refused"), st.integers(0, 6)),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["accepting", "refusing-once", "small-queue"]),
)
def test_every_record_is_published_or_dead_lettered_with_a_reason(
    plan: list[tuple[str, str | int]], dlq_kind: str
) -> None:
    """Random batches, record shapes and SNS failures: none lost, none both published and dead-lettered.

    Each change is either refused by SNS for good, or fails (retryably) a number of
    times and then gets through; the relay retries 3 times within an invocation.
    """
    batch = records(len(plan))
    shapes = {"good": lambda r: r, "broken": broken, "huge": huge}
    batch = [shapes[shape](record) for record, (shape, _) in zip(batch, plan, strict=True)]
    fates = {record["eventID"]: fate for record, (_, fate) in zip(batch, plan, strict=True)}

    def fail(change_id: str, attempt: int) -> tuple[str, str, bool] | None:
        fate = fates[change_id]
        return REFUSED if fate == "refused" else RETRYABLE if attempt <= int(fate) else None

    sns = FakeSns(fail=fail)
    sqs = {
        "accepting": FakeSqs(),
        "refusing-once": FakeSqs(refuse=[True]),
        "small-queue": FakeSqs(max_bytes=64 * 1024),
    }[dlq_kind]
    invocations = run_mapping(batch, sns, queue(sqs))

    letters = {letter["event_id"]: letter for letter in sqs.letters()}
    assert len(letters) == len(sqs.letters()), "a record was dead-lettered twice"
    published = Counter(sns.published)
    for record in batch:
        event_id = record["eventID"]
        assert (event_id in published) != (event_id in letters), f"{event_id}: published xor dead-lettered"
        if event_id in letters:
            assert letters[event_id]["reason"]
            assert letters[event_id]["sequence"] == record["dynamodb"]["SequenceNumber"]
    for message in sqs.messages:
        assert message_size(message["Body"], message["MessageAttributes"]) <= sqs.max_bytes
    if all(fate == "refused" or int(fate) < RETRY.max_attempts for _, fate in plan):
        assert invocations == 1
        assert set(published.values()) <= {1}, "published more than once"


def test_a_write_that_did_not_bump_the_revision_is_published_and_reported() -> None:
    """A console edit that kept `revision`: the history gets it, and it is counted as unordered."""
    (record,) = records(1)
    modify = json.loads(json.dumps(record))
    modify["eventName"] = "MODIFY"
    modify["eventID"] = "console-edit"
    modify["dynamodb"]["OldImage"] = record["dynamodb"]["NewImage"]
    modify["dynamodb"]["NewImage"] = {**record["dynamodb"]["NewImage"], "rate": {"N": "9"}}
    before = stream_records("unordered", "MODIFY")
    sns = FakeSns()
    relay([modify], sns=sns, topic_arn=TOPIC)
    assert sns.published == ["console-edit"]
    assert stream_records("unordered", "MODIFY") - before == 1
