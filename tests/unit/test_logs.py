"""Structured logs: one JSON object per line, the configured level, and the fields that correlate lines:
the Lambda request id within an invocation, and one change id from the stream record to the indexed document."""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from chalice.local import LambdaContext

from chalicelib import clients
from chalicelib.config import ConfigError
from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.deadletter import dead_letter
from chalicelib.observability import logs
from chalicelib.sinks.base import ItemResult
from chalicelib.stream.bus import Retry
from chalicelib.stream.relay import relay
from currencies_local.synthetic import TableModel
from tests.unit.aws_fakes import FakeSns, FakeSqs
from tests.unit.test_consumer import FakeSink

TOPIC = "arn:aws:sns:us-east-1:123456789012:currency-topic"
EVENTS, RATES = "currency-events", "currency-rates"
log = logging.getLogger("chalicelib.tests")


class Captured:
    """The `chalicelib` logger as `logs.configure()` sets it up, writing into a buffer instead of stderr."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        self._stream = io.StringIO()

    def configure(self, level: str | None = None) -> None:
        if level is None:
            self._monkeypatch.delenv(logs.LEVEL_VARIABLE, raising=False)
        else:
            self._monkeypatch.setenv(logs.LEVEL_VARIABLE, level)
        logs.configure()
        logs.configure()  # idempotent: still one handler, so one line per record
        (handler,) = [
            h for h in logging.getLogger("chalicelib").handlers if isinstance(h.formatter, logs.JsonFormatter)
        ]
        handler.setStream(self._stream)  # type: ignore[attr-defined]

    def lines(self) -> list[dict[str, Any]]:
        """Every line written so far, each parsed as JSON (a line that is not JSON fails the test)."""
        return [json.loads(line) for line in self._stream.getvalue().splitlines()]


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Captured]:
    logger = logging.getLogger("chalicelib")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers.clear()
    try:
        yield Captured(monkeypatch)
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def context(name: str = "currencies-dev-relay_changes") -> LambdaContext:
    return LambdaContext(name, memory_size=128)


# --- format and level -------------------------------------------------------------------------


def test_every_line_is_one_json_object_with_extras_and_exceptions(captured: Captured) -> None:
    captured.configure()
    log.info("multi\nline", extra={"symbol": "EUR", "count": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second = captured.lines()
    assert first["message"] == "multi\nline"
    assert (first["level"], first["logger"], first["symbol"], first["count"]) == ("INFO", "chalicelib.tests", "EUR", 3)
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exception"]


@pytest.mark.parametrize(
    ("setting", "shown"),
    [
        (None, ["INFO", "WARNING"]),
        ("DEBUG", ["DEBUG", "INFO", "WARNING"]),
        ("warning", ["WARNING"]),
        ("ERROR", []),
    ],
)
def test_the_level_comes_from_the_environment(captured: Captured, setting: str | None, shown: list[str]) -> None:
    captured.configure(setting)
    log.debug("d")
    log.info("i")
    log.warning("w")
    assert [line["level"] for line in captured.lines()] == shown


@pytest.mark.parametrize("bad", ["LOUD", "", "10", "INFO,DEBUG"])
def test_a_bad_level_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=f"CURRENCIES_LOG_LEVEL must be one of DEBUG, INFO.*got {bad!r}"):
        logs.level_from({"CURRENCIES_LOG_LEVEL": bad})


# --- correlation with the invocation ----------------------------------------------------------


def test_lines_carry_the_request_id_within_an_invocation_and_not_after(captured: Captured) -> None:
    captured.configure()
    first, second = context(), context("currencies-dev-index_changes")
    with logs.invocation(first):
        log.info("in the first")
        with logs.about_change("change-1"):
            log.info("about a change")
        log.info("change done")
    with logs.invocation(second):
        log.info("in the second")
    log.info("after")
    lines = {line["message"]: line for line in captured.lines()}
    assert lines["in the first"]["request_id"] == first.aws_request_id
    assert lines["in the first"]["function_name"] == "currencies-dev-relay_changes"
    assert lines["about a change"]["request_id"] == first.aws_request_id
    assert lines["about a change"]["change_id"] == "change-1"
    assert "change_id" not in lines["change done"]
    assert lines["in the second"]["request_id"] == second.aws_request_id != first.aws_request_id
    assert lines["in the second"]["function_name"] == "currencies-dev-index_changes"
    assert not {"request_id", "function_name"} & set(lines["after"])


def test_the_app_middleware_correlates_every_line_of_a_handler_invocation(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """app.py as the Lambda runtime imports it: a handler's lines carry that invocation's request id."""
    for name, value in {
        "CURRENCIES_STREAM_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/currency/stream/label",
        "CURRENCIES_TOPIC_ARN": TOPIC,
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("CURRENCIES_PUSHGATEWAY_URL", "CURRENCIES_DLQ_URL", logs.LEVEL_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    saved = sys.modules.pop("app", None)
    clients.settings.cache_clear()
    try:
        app = importlib.import_module("app")
        captured.configure()  # after app.py's own configure(), so that its lines land in the buffer
        monkeypatch.setattr(clients, "sns", lambda: None)
        monkeypatch.setattr(clients, "metrics_pusher", lambda: None)

        def fake_relay(records: list[dict[str, Any]], **_: Any) -> Any:
            log.warning("inside the handler")
            return relay(records, sns=None, topic_arn=TOPIC)

        monkeypatch.setattr(app, "relay", fake_relay)
        invocation = context()
        assert app.relay_changes({"Records": []}, invocation) == {"batchItemFailures": []}
        log.warning("between invocations")
    finally:
        sys.modules.pop("app", None)
        if saved is not None:
            sys.modules["app"] = saved
        clients.settings.cache_clear()
    inside, between = captured.lines()
    assert inside["request_id"] == invocation.aws_request_id
    assert inside["function_name"] == "currencies-dev-relay_changes"
    assert "request_id" not in between


# --- one change id from the stream record to the indexed document ------------------------------


def records(symbols: int) -> list[dict[str, Any]]:
    table = TableModel()
    for n in range(symbols):
        table.put(f"S{n}", Decimal(n + 1))
    return table.records


def relayed(batch: list[dict[str, Any]]) -> list[InboundMessage]:
    """Relay the records through a fake SNS and hand its messages to the consumer as SQS would."""
    sns = FakeSns()
    report = relay(batch, sns=sns, topic_arn=TOPIC, retry=Retry(sleep=lambda _: None))
    assert report.counts["published"] == len(batch)
    return [InboundMessage(f"m-{n}", entry["Message"]) for n, entry in enumerate(e for c in sns.calls for e in c)]


def test_a_change_logs_one_id_from_the_relay_to_the_indexed_document(captured: Captured) -> None:
    captured.configure("DEBUG")
    batch = records(2)
    sink = FakeSink()
    with logs.invocation(context()):
        messages = relayed(batch)
    with logs.invocation(context("currencies-dev-index_changes")):
        consume(messages, sink, events_index=EVENTS, rates_index=RATES)
    documents = {a.document["currency"]["symbol"]: a.document for a in sink.requests[0] if a.index == EVENTS}
    lines = captured.lines()
    for record in batch:
        change_id = record["eventID"]
        symbol = record["dynamodb"]["NewImage"]["symbol"]["S"]
        about = [line for line in lines if line.get("change_id") == change_id]
        assert [(line["message"], line["level"]) for line in about] == [
            ("change published", "DEBUG"),
            ("change indexed", "DEBUG"),
        ]
        assert documents[symbol]["event"]["id"] == change_id
        assert about[0]["function_name"] != about[1]["function_name"]


def test_at_info_a_change_that_went_well_logs_nothing(captured: Captured) -> None:
    captured.configure("INFO")
    sink = FakeSink()
    consume(relayed(records(3)), sink, events_index=EVENTS, rates_index=RATES)
    assert len(sink.requests[0]) == 6
    assert captured.lines() == []


def test_a_failed_change_is_logged_with_its_id_at_warning_or_error(captured: Captured) -> None:
    """Refused by the engine for good on its last receive: dead-lettered, and every line about it says which."""
    captured.configure("INFO")
    sqs = FakeSqs(refuse=[True])  # the first letter is refused once: the dead-letter module logs a warning too
    (message,) = relayed(records(1))
    change_id = json.loads(message.body)["id"]
    refused = FakeSink(lambda actions: [ItemResult(400, "mapper_parsing_exception", "bad") for _ in actions])
    report = consume(
        [InboundMessage(message.message_id, message.body, receive_count=5)],
        refused,
        events_index=EVENTS,
        rates_index=RATES,
        max_receives=5,
        dead_letter=lambda body, reason: dead_letter(sqs, "dlq", body, reason=reason, source="consumer"),
    )
    assert report.outcomes == {"dead_lettered": 1}
    lines = captured.lines()
    assert {line["logger"] for line in lines} == {"chalicelib.consumer.indexer", "chalicelib.deadletter"}
    assert [(line["level"], line["message"].split(";")[0]) for line in lines] == [
        ("WARNING", "indexing failed"),
        ("WARNING", "the dead-letter queue refused a letter"),
        ("ERROR", "dead letter sent without its payload"),
        ("ERROR", "message dead-lettered"),
    ]
    assert all(line["change_id"] == change_id for line in lines)
    assert refused.requests[0][0].document["event"]["id"] == change_id


def test_a_record_the_relay_dead_letters_is_logged_with_its_event_id(captured: Captured) -> None:
    captured.configure("INFO")
    batch = records(2)
    batch[1]["dynamodb"]["NewImage"]["symbol"] = {"M": {}}  # no writer of ours makes this
    sqs = FakeSqs()
    relay(
        batch,
        sns=FakeSns(),
        topic_arn=TOPIC,
        dead_letter=lambda body, reason: dead_letter(sqs, "dlq", body, reason=reason, source="stream"),
    )
    (line,) = captured.lines()
    assert (line["message"], line["level"]) == ("stream record dead-lettered", "ERROR")
    assert line["change_id"] == batch[1]["eventID"] == sqs.letters()[0]["event_id"]
