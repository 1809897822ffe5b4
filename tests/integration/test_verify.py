"""`currencies verify` against the running pipeline: clean, then each corruption on its own, then repaired.

The table and indices are shared with other tests, so most checks name this module's
symbols (`--symbol`); one run checks the whole table. The command runs in-process through
the `currencies` group, configured by the pipeline's own CURRENCIES_* settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from chalicelib.api.currency import CurrencyRate
from chalicelib.api.store import RateStore
from currencies_local.cli import main
from currencies_local.pipeline import LocalPipeline
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually

SYMBOLS = ["VYA", "VYB", "VYC", "VYD"]  # no other test uses them; VYD ends deleted (a tombstone)
STRAY = "VYZ"  # never in the table
Outcome = tuple[int, dict[str, Any]]


def verify(pipeline: LocalPipeline, *args: str) -> Outcome:
    result = CliRunner().invoke(main, ["verify", "--json", *args], env=pipeline.environment)
    return result.exit_code, json.loads(result.output)


def verify_mine(pipeline: LocalPipeline) -> Outcome:
    return verify(pipeline, *(f"--symbol={symbol}" for symbol in [*SYMBOLS, STRAY]))


def found(outcome: Outcome) -> set[tuple[str, str]]:
    return {(difference["kind"], difference["symbol"]) for difference in outcome[1]["differences"]["listed"]}


def clean(outcome: Outcome) -> bool:
    return outcome[0] == 0


@pytest.fixture(scope="module")
def store(pipeline: LocalPipeline, search: EngineUnderTest) -> RateStore:
    """This module's symbols written through the store (as the API writes), and indexed by the pipeline."""
    assert pipeline.resources is not None
    rates = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    for n, symbol in enumerate(SYMBOLS):
        rates.put(CurrencyRate(symbol, Decimal(f"1.{n}5")))
    rates.put(CurrencyRate("VYA", Decimal("2.50")))  # stored and indexed as "2.5"
    rates.delete("VYD")
    outcome = eventually(lambda: verify_mine(pipeline), clean, timeout_s=60)
    assert clean(outcome), outcome
    return rates


def rate_document(search: EngineUnderTest, symbol: str) -> dict[str, Any]:
    return dict(search.client.get(index=search.rates_index, id=symbol))


def index_by_hand(
    search: EngineUnderTest, symbol: str, source: dict[str, Any], version: int, version_type: str
) -> None:
    """Write a rates document as an operator could, bypassing the pipeline (visible to searches at once)."""
    options = {"index": search.rates_index, "id": symbol, "version": version, "version_type": version_type}
    if search.name == "opensearch":
        search.client.index(body=source, refresh="wait_for", **options)
    else:
        search.client.index(document=source, refresh="wait_for", **options)


def delete_by_hand(search: EngineUnderTest, symbol: str, **versioning: Any) -> None:
    search.client.delete(index=search.rates_index, id=symbol, refresh="wait_for", **versioning)


def corrupted_then_repaired(
    pipeline: LocalPipeline, corrupt: Callable[[], None], repair: Callable[[], None], expected: tuple[str, str]
) -> Outcome:
    corrupt()
    outcome = verify_mine(pipeline)
    assert outcome[0] == 1, outcome
    assert expected in found(outcome)
    repair()
    repaired = eventually(lambda: verify_mine(pipeline), clean, timeout_s=30)
    assert clean(repaired), repaired
    return outcome


def test_clean_after_the_pipeline_indexed_every_write(pipeline: LocalPipeline, store: RateStore) -> None:
    code, report = verify_mine(pipeline)
    assert code == 0
    assert report["clean"] is True
    assert report["checked"]["table_items"] == len(SYMBOLS)  # the stray symbol has no item
    assert report["differences"]["total"] == 0
    assert report["dead_letters"]["queue_url"] == pipeline.environment["CURRENCIES_DLQ_URL"]


def test_a_stray_document(pipeline: LocalPipeline, search: EngineUnderTest, store: RateStore) -> None:
    stray = {
        "@timestamp": "2026-01-01T00:00:00Z",
        "event": {"id": "by-hand"},
        "currency": {"symbol": STRAY, "rate": "9"},
    }
    whole_table: list[Outcome] = []

    def corrupt() -> None:
        index_by_hand(search, STRAY, stray, 1, "external")
        whole_table.append(verify(pipeline, "--max-differences=100000"))  # found by streaming the index

    outcome = corrupted_then_repaired(pipeline, corrupt, lambda: delete_by_hand(search, STRAY), ("extra", STRAY))
    assert found(outcome) == {("extra", STRAY)}
    assert whole_table[0][0] == 1
    assert ("extra", STRAY) in found(whole_table[0])


def test_a_write_acknowledged_a_moment_before_the_check_is_seen(
    pipeline: LocalPipeline, search: EngineUnderTest, store: RateStore
) -> None:
    """Searches see the last refresh (every 1 s at best): verify refreshes first, or it misses this."""
    version = time.time_ns()  # above what earlier tests left for this id
    options = {"index": search.rates_index, "id": STRAY, "version": version, "version_type": "external"}
    source = {"@timestamp": "2026-01-01T00:00:00Z", "event": {"id": "by-hand"}, "currency": {"symbol": STRAY}}
    search.client.index(
        **({"body": source} if search.name == "opensearch" else {"document": source}), **options
    )  # no refresh
    try:
        code, report = verify_mine(pipeline)
    finally:
        delete_by_hand(search, STRAY)
    assert code == 1
    assert found((code, report)) == {("extra", STRAY)}


def test_a_missing_document(pipeline: LocalPipeline, search: EngineUnderTest, store: RateStore) -> None:
    document = rate_document(search, "VYA")
    version = document["_version"]
    outcome = corrupted_then_repaired(
        pipeline,
        lambda: delete_by_hand(search, "VYA", version=version, version_type="external_gte"),
        lambda: index_by_hand(search, "VYA", document["_source"], version, "external_gte"),
        ("missing", "VYA"),
    )
    assert found(outcome) == {("missing", "VYA")}
    assert outcome[1]["differences"]["listed"][0]["table"].startswith("2.5 @ v")


def test_a_wrong_rate(pipeline: LocalPipeline, search: EngineUnderTest, store: RateStore) -> None:
    document = rate_document(search, "VYB")
    wrong = json.loads(json.dumps(document["_source"]))
    wrong["currency"]["rate"] = "1.150"  # the value is right, its text is not what the pipeline writes
    outcome = corrupted_then_repaired(
        pipeline,
        lambda: index_by_hand(search, "VYB", wrong, document["_version"], "external_gte"),
        lambda: index_by_hand(search, "VYB", document["_source"], document["_version"], "external_gte"),
        ("different_rate", "VYB"),
    )
    assert found(outcome) == {("different_rate", "VYB")}
    assert outcome[1]["differences"]["listed"][0]["index"].startswith("1.150 @ v")


def test_an_older_version(pipeline: LocalPipeline, store: RateStore) -> None:
    """A write the stream handler must dead-letter (its change is too large for SNS): the table moves
    on, the index stays one version behind, and the dead-letter queue says why."""
    assert pipeline.resources is not None
    table = boto3.resource("dynamodb").Table(pipeline.resources.table_name)

    def write(expression: str, values: dict[str, Any]) -> None:
        table.update_item(Key={"symbol": "VYC"}, UpdateExpression=expression, ExpressionAttributeValues=values)

    def stream_letter_seen(outcome: Outcome) -> bool:
        groups = (outcome[1]["dead_letters"] or {}).get("groups", [])
        return ("older_version", "VYC") in found(outcome) and any(
            group["source"] == "stream" and "bytes" in group["reason"] for group in groups
        )

    try:
        write("SET note = :big ADD revision :one", {":big": "x" * 300_000, ":one": 1})
        outcome = eventually(lambda: verify_mine(pipeline), stream_letter_seen, timeout_s=30)
        assert outcome[0] == 1, outcome
        assert found(outcome) == {("older_version", "VYC"), ("event_differs", "VYC")}
        assert outcome[1]["dead_letters"]["depth"] >= 1
        # The repair: drop the attribute (that change, its old image still large, is dead-lettered
        # too), then write the rate again through the store: a change the pipeline can carry.
        write("REMOVE note ADD revision :one", {":one": 1})
        store.put(CurrencyRate("VYC", Decimal("1.25")))
        repaired = eventually(lambda: verify_mine(pipeline), clean, timeout_s=30)
        assert clean(repaired), repaired
    finally:
        remove_letters_of(pipeline, "VYC")


def test_the_whole_table(pipeline: LocalPipeline, search: EngineUnderTest, store: RateStore) -> None:
    """Other tests leave their own differences (unreadable items, documents without items): this run
    only shows that every item and live document is read, and this module's symbols agree."""
    started = time.monotonic()
    code, report = verify(pipeline, "--max-differences=100000")
    seconds = time.monotonic() - started
    assert code == (0 if report["clean"] else 1), report
    assert report["checked"]["table_items"] >= len(SYMBOLS)
    assert report["checked"]["index_documents"] >= len(SYMBOLS) - 1  # the live ones
    mine = {d for d in found((code, report)) if d[1] in [*SYMBOLS, STRAY]}
    assert mine == set()
    assert report["differences"]["truncated"] is False
    print(f"whole table: {report['checked']} in {seconds:.2f} s; {report['differences']['by_kind']}")
    readable = CliRunner().invoke(main, ["verify"], env={**pipeline.environment, "COLUMNS": "300"})
    assert readable.exit_code == code
    checked = report["checked"]
    summary = f"{checked['table_items']} table items and {checked['index_documents']} index documents checked"
    assert summary in readable.output


def test_a_corruption_shows_in_the_whole_table_run_and_in_the_readable_diff(
    pipeline: LocalPipeline, search: EngineUnderTest, store: RateStore
) -> None:
    document = rate_document(search, "VYB")
    wrong = json.loads(json.dumps(document["_source"]))
    wrong["currency"]["rate"] = "7"
    index_by_hand(search, "VYB", wrong, document["_version"], "external_gte")
    try:
        code, report = verify(pipeline, "--max-differences=100000")
        assert code == 1
        assert ("different_rate", "VYB") in found((code, report))
        result = CliRunner().invoke(main, ["verify", "--symbol", "VYB"], env={**pipeline.environment, "COLUMNS": "200"})
        assert result.exit_code == 1
        row = next(line for line in result.output.splitlines() if "VYB" in line)
        assert "different_rate" in row
        assert "1.15 @ v" in row
        assert "7 @ v" in row
    finally:
        index_by_hand(search, "VYB", document["_source"], document["_version"], "external_gte")


def test_an_unreachable_engine_is_reported_not_raised(pipeline: LocalPipeline) -> None:
    environment = {**pipeline.environment, "CURRENCIES_SEARCH_URL": "http://127.0.0.1:9"}
    result = CliRunner().invoke(main, ["verify", "--json", "--symbol=VYA"], env=environment)
    assert result.exit_code == 2
    assert "could not refresh" in json.loads(result.output)["error"]


def remove_letters_of(pipeline: LocalPipeline, symbol: str) -> None:
    """Delete this test's dead letters (stream-sourced, keyed by `symbol`), leaving the others in the queue."""
    sqs = boto3.client("sqs")
    url = pipeline.environment["CURRENCIES_DLQ_URL"]
    held = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
        if not messages:
            break
        for message in messages:
            letter = json.loads(message["Body"])
            keys = (letter.get("keys") if isinstance(letter, dict) else None) or {}
            if keys.get("symbol", {}).get("S") == symbol:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                held.append(message["ReceiptHandle"])
    for handle in held:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
