"""The local stream mapping fails the way this project's DynamoDB event source mapping does on AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from currencies_local.stream_mapping import ShardCheckpoint, failure_description, first_failed
from currencies_ops.deploy.stack import StreamMappingSettings

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def records(count: int, *, age_s: float = 1.0, start: int = 100) -> list[dict]:
    created = (NOW - timedelta(seconds=age_s)).timestamp()
    return [
        {
            "eventID": f"e{start + i}",
            "dynamodb": {"SequenceNumber": str(start + i), "ApproximateCreationDateTime": created},
        }
        for i in range(count)
    ]


def sequences(batch: list[dict]) -> list[str]:
    return [record["dynamodb"]["SequenceNumber"] for record in batch]


def test_partial_responses_are_read_as_lambda_reads_them() -> None:
    batch = records(4)
    assert first_failed(None, batch) is None
    assert first_failed({}, batch) is None
    assert first_failed({"batchItemFailures": []}, batch) is None
    assert first_failed({"batchItemFailures": [{"itemIdentifier": "102"}, {"itemIdentifier": "101"}]}, batch) == 1
    for malformed in ([{"itemIdentifier": ""}], [{"itemIdentifier": None}], [{"id": "101"}], [{"itemIdentifier": "9"}]):
        assert first_failed({"batchItemFailures": malformed}, batch) == 0
    assert first_failed({"batchItemFailures": "101"}, batch) == 0


def test_a_partial_response_resumes_at_the_failed_record() -> None:
    checkpoint = ShardCheckpoint()
    checkpoint.add(records(5))
    batch, _ = checkpoint.next_batch(NOW)
    assert checkpoint.settle(errored=False, failed_from=3) == []
    again, _ = checkpoint.next_batch(NOW)
    assert sequences(again) == sequences(batch)[3:]


def test_an_error_bisects_until_the_bad_record_is_alone_and_then_gives_it_up() -> None:
    config = StreamMappingSettings(maximum_retry_attempts=2)
    checkpoint = ShardCheckpoint(config)
    checkpoint.add(records(8))
    bad = "105"
    handled, given_up = [], []
    for _ in range(100):
        batch, expired = checkpoint.next_batch(NOW)
        assert expired == []
        if not batch:
            break
        errored = bad in sequences(batch)
        if not errored:
            handled += sequences(batch)
        given_up += checkpoint.settle(errored=errored, failed_from=None)
    assert handled == [str(n) for n in range(100, 108) if str(n) != bad]
    assert [sequences(d.records) for d in given_up] == [[bad]]
    assert given_up[0].condition == "RetryAttemptsExhausted"


def test_records_older_than_the_maximum_age_are_given_up_without_an_invocation() -> None:
    checkpoint = ShardCheckpoint(StreamMappingSettings(maximum_record_age_s=60))
    checkpoint.add(records(2, age_s=120) + records(2, age_s=1, start=200))
    batch, expired = checkpoint.next_batch(NOW)
    assert sequences(batch) == ["200", "201"]
    assert [(sequences(d.records), d.condition) for d in expired] == [(["100", "101"], "RecordAgeExceeded")]


@given(
    size=st.integers(1, 40),
    bad=st.sets(st.integers(0, 39), max_size=4),
    partial=st.booleans(),
    retries=st.integers(0, 4),
)
def test_every_record_is_handled_once_or_given_up_never_lost(
    size: int, bad: set[int], partial: bool, retries: int
) -> None:
    """Records after a bad one are never held back forever, and a good record is never given up with it
    when the handler names the bad record (partial responses)."""
    checkpoint = ShardCheckpoint(StreamMappingSettings(maximum_retry_attempts=retries))
    checkpoint.add(records(size, start=0))
    poison = {str(n) for n in bad if n < size}
    handled: list[str] = []
    given_up: list[str] = []
    for _ in range(10_000):
        batch, _ = checkpoint.next_batch(NOW)
        if not batch:
            break
        failing = [i for i, seq in enumerate(sequences(batch)) if seq in poison]
        if not failing:
            handled += sequences(batch)
            checkpoint.settle(errored=False, failed_from=None)
        elif partial:
            handled += sequences(batch)[: failing[0]]
            given_up += [
                s for d in checkpoint.settle(errored=False, failed_from=failing[0]) for s in sequences(d.records)
            ]
        else:
            given_up += [s for d in checkpoint.settle(errored=True, failed_from=None) for s in sequences(d.records)]
    assert not checkpoint.pending
    assert sorted(handled + given_up, key=int) == [str(n) for n in range(size)]
    assert poison <= set(given_up)
    assert len(handled) == len(set(handled))


def test_the_failure_description_names_the_records_range() -> None:
    checkpoint = ShardCheckpoint(StreamMappingSettings(maximum_retry_attempts=0, bisect_batch_on_function_error=False))
    checkpoint.add(records(3))
    checkpoint.next_batch(NOW)
    [discarded] = checkpoint.settle(errored=True, failed_from=None)
    info = failure_description(discarded, stream_arn="arn:s", shard_id="shard-1", function="relay_changes")
    assert info["requestContext"]["condition"] == "RetryAttemptsExhausted"
    batch_info = info["DDBStreamBatchInfo"]
    assert (batch_info["startSequenceNumber"], batch_info["endSequenceNumber"], batch_info["batchSize"]) == (
        "100",
        "102",
        3,
    )
    assert batch_info["shardId"] == "shard-1"
