"""Unit tests for currencies_ops.redrive: parsing letters, choosing, planning, grouping, and the run on fakes.

Letters are made by production code (`chalicelib.deadletter.dead_letter` into the SQS fake of
aws_fakes), stream records by `TableModel` (as the table's stream emits them). The dead-letter
queue is a fake with SQS's visibility semantics, so a test sees what stays, what is deleted and
what is visible again after a run.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from chalicelib.config import Settings
from chalicelib.deadletter import dead_letter
from chalicelib.stream.changes import Change, change_from_record
from currencies_local.synthetic import TableModel
from currencies_ops import redrive_command
from currencies_ops.letters import (
    EXTEND_BEFORE_S,
    MOVED_REASON,
    UNKNOWN_REASON,
    HeldLetters,
    QueueUnreadable,
    parse_letter,
)
from currencies_ops.metrics import OperationMetrics
from currencies_ops.redrive import (
    Entry,
    Options,
    Row,
    chosen,
    plan,
    redrive,
    rows,
)
from currencies_ops.verify import Quiet
from tests.unit.aws_fakes import FakeSns, FakeSqs, client_error

DLQ = "https://sqs.test/1/currency-queue-dlq"
QUEUE = "https://sqs.test/1/currency-queue"
TOPIC = "arn:aws:sns:us-east-1:1:currency-topic"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


# -- Letters as the pipeline writes them ---------------------------------------------------------


def stream_records() -> list[dict[str, Any]]:
    """Stream records: EUR inserted, then modified; USD inserted."""
    table = TableModel()
    table.put("EUR", Decimal("1.08"))
    table.put("EUR", Decimal("1.09"))
    table.put("USD", Decimal("1.2"))
    return table.records


RECORDS = stream_records()


def envelope(message: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "sns-7", "TopicArn": TOPIC, "Message": message})


def letter_body(payload: str, *, reason: str, source: str) -> str:
    """The body `dead_letter` sends for this payload."""
    sqs = FakeSqs()
    dead_letter(sqs, DLQ, payload, reason=reason, source=source)  # type: ignore[arg-type]
    return sqs.messages[0]["Body"]


def stream_letter(record: dict[str, Any], reason: str = "SNS refused the change: KMS") -> str:
    return letter_body(json.dumps(record, separators=(",", ":")), reason=reason, source="stream")


def consumer_letter(change: Change, reason: str = "bulk request failed: 403") -> str:
    return letter_body(envelope(change.to_json()), reason=reason, source="consumer")


def huge_stream_letter() -> str:
    """A record too large to keep: its letter goes without the payload."""
    record = json.loads(json.dumps(RECORDS[2]))
    record["dynamodb"]["NewImage"]["note"] = {"S": "x" * 300_000}
    return stream_letter(record, reason="change message is too large")


# -- Parsing --------------------------------------------------------------------------------------


def test_a_stream_letter_keeps_its_record_and_names_its_key() -> None:
    record = RECORDS[0]
    letter = parse_letter("m1", stream_letter(record))
    assert (letter.source, letter.reason) == ("stream", "SNS refused the change: KMS")
    assert json.loads(letter.payload or "") == record
    assert letter.example == f"EUR (sequence {record['dynamodb']['SequenceNumber']})"


def test_a_stream_letter_without_payload_keeps_its_identifiers() -> None:
    letter = parse_letter("m1", huge_stream_letter())
    assert letter.source == "stream"
    assert letter.payload is None
    assert letter.identifiers["keys"] == {"symbol": {"S": "USD"}}
    assert letter.identifiers["sequence"] == RECORDS[2]["dynamodb"]["SequenceNumber"]


def test_a_consumer_letter_keeps_the_envelope_as_received() -> None:
    change = change_from_record(RECORDS[0], NOW)
    letter = parse_letter("m1", consumer_letter(change))
    assert (letter.source, letter.reason) == ("consumer", "bulk request failed: 403")
    assert letter.payload == envelope(change.to_json())
    assert letter.identifiers["message_id"] == "sns-7"
    assert letter.example.startswith("EUR (sequence ")


@pytest.mark.parametrize("wrap", [envelope, lambda text: text], ids=["sns-envelope", "raw-change"])
def test_a_message_the_redrive_policy_moved_is_a_consumer_letter_without_reason(wrap: Any) -> None:
    body = wrap(change_from_record(RECORDS[0], NOW).to_json())
    letter = parse_letter("m1", body)
    assert (letter.source, letter.reason, letter.payload) == ("consumer", MOVED_REASON, body)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[1, 2]",
        "",
        json.dumps({"hello": "world"}),
        json.dumps({"source": "stream", "reason": "r"}),  # no payload field at all
        json.dumps({"source": "elsewhere", "reason": "r", "payload": "x"}),
        json.dumps({"source": "stream", "reason": "r", "payload": 7}),
    ],
)
def test_anything_else_is_unknown_and_cannot_be_re_sent(body: str) -> None:
    letter = parse_letter("m9", body)
    assert (letter.source, letter.reason, letter.payload) == ("unknown", UNKNOWN_REASON, None)
    assert letter.example == "SQS message m9"
    decided = plan(letter, NOW)
    assert decided.destination is None
    assert decided.problem is not None


# -- Choosing, planning, grouping ------------------------------------------------------------------


def test_filters_by_source_and_reason_substring_in_any_case() -> None:
    letter = parse_letter("m1", stream_letter(RECORDS[0], reason="SNS refused the change: KMS"))
    assert chosen(letter, None, None)
    assert chosen(letter, "stream", "refused THE")
    assert not chosen(letter, "consumer", None)
    assert not chosen(letter, None, "bulk")


def test_a_stream_letter_goes_to_the_topic_as_the_relay_would_publish_it() -> None:
    record = RECORDS[1]
    decided = plan(parse_letter("m1", stream_letter(record)), NOW)
    assert decided.destination == "topic"
    assert decided.change == change_from_record(record, NOW)
    assert decided.change.type == "MODIFY"


def test_a_consumer_letter_goes_to_the_queue_as_the_raw_change() -> None:
    change = change_from_record(RECORDS[0], NOW)
    for body in (consumer_letter(change), envelope(change.to_json()), change.to_json()):
        decided = plan(parse_letter("m1", body), NOW)
        assert decided.destination == "queue"
        assert decided.body == change.to_json()
        assert decided.change == change


def test_a_letter_without_payload_stays_and_says_how_to_find_the_original() -> None:
    decided = plan(parse_letter("m1", huge_stream_letter()), NOW)
    assert decided.destination is None
    assert decided.problem is not None
    assert '"USD"' in decided.problem
    assert RECORDS[2]["dynamodb"]["SequenceNumber"] in decided.problem


def test_letters_that_would_fail_again_stay() -> None:
    record = json.loads(json.dumps(RECORDS[1]))
    del record["dynamodb"]["NewImage"]  # a MODIFY without its new image: still no change
    stream = plan(parse_letter("m1", stream_letter(record)), NOW)
    assert stream.destination is None
    assert "NewImage" in (stream.problem or "")
    consumer = plan(parse_letter("m2", letter_body(envelope("{}"), reason="invalid", source="consumer")), NOW)
    assert consumer.destination is None
    assert "refuse it again" in (consumer.problem or "")


def test_rows_group_by_source_reason_and_destination_largest_first() -> None:
    change = change_from_record(RECORDS[0], NOW)
    letters = [
        parse_letter("a", stream_letter(RECORDS[0], reason="r1")),
        parse_letter("b", consumer_letter(change, reason="r2")),
        parse_letter("c", consumer_letter(change, reason="r2")),
        parse_letter("d", huge_stream_letter()),
        parse_letter("e", stream_letter(RECORDS[1], reason="r1")),
        parse_letter("f", consumer_letter(change, reason="r2")),
    ]
    shown = rows([Entry(letter, chosen=False) for letter in letters], "show")
    assert [(r.source, r.reason, r.letters) for r in shown] == [
        ("consumer", "r2", 3),
        ("stream", "r1", 2),
        ("stream", "change message is too large", 1),
    ]
    entries = [Entry(letter, chosen=letter.reason != "r2") for letter in letters]
    for entry in entries:
        entry.plan = plan(entry.letter, NOW) if entry.chosen else None
        entry.failure = entry.plan.problem if entry.plan else None
        entry.resent = entry.letter.message_id == "a"
    assert rows(entries, "redrive") == [
        Row("consumer", "r2", "not chosen", 3, 0, "EUR (sequence 100000000000000000000)"),
        Row("stream", "r1", "topic", 2, 1, "EUR (sequence 100000000000000000000)"),
        Row("stream", "change message is too large", "stays", 1, 0, "USD (sequence 100000000000000000002)"),
    ]


# -- The run, on an SQS fake with visibility ---------------------------------------------------


class FakeQueues:
    """SQS queues with visibility: a received message is hidden for its timeout (time stands still
    unless `now` moves), a receipt handle is only valid until the message is received again."""

    def __init__(self) -> None:
        self.now = 0.0
        self.messages: dict[str, list[dict[str, Any]]] = {DLQ: [], QUEUE: []}
        self.sent_batches: list[list[dict[str, Any]]] = []
        self.send_error: Exception | None = None
        self.refuse_bodies: set[str] = set()
        self.delete_error: Exception | None = None
        self.visibility_calls: list[int] = []
        self._ids = itertools.count()

    def put(self, url: str, body: str) -> str:
        message_id = f"id-{next(self._ids)}"
        self.messages[url].append({"MessageId": message_id, "Body": body, "visible_at": 0.0, "handle": None})
        return message_id

    def bodies(self, url: str) -> list[str]:
        return [message["Body"] for message in self.messages[url]]

    def visible(self, url: str) -> list[str]:
        return [message["MessageId"] for message in self.messages[url] if message["visible_at"] <= self.now]

    def get_queue_url(self, *, QueueName: str) -> dict[str, str]:
        if QueueName != "currency-queue":
            raise client_error("AWS.SimpleQueueService.NonExistentQueue", operation="GetQueueUrl")
        return {"QueueUrl": QUEUE}

    def get_queue_attributes(self, *, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        return {"Attributes": {"ApproximateNumberOfMessages": str(len(self.visible(QueueUrl)))}}

    def receive_message(
        self, *, QueueUrl: str, MaxNumberOfMessages: int, VisibilityTimeout: int, WaitTimeSeconds: int
    ) -> dict[str, Any]:
        assert 1 <= MaxNumberOfMessages <= 10
        found = [m for m in self.messages[QueueUrl] if m["visible_at"] <= self.now][:MaxNumberOfMessages]
        for message in found:
            message["visible_at"] = self.now + VisibilityTimeout
            message["handle"] = f"h-{next(self._ids)}"
        return {"Messages": [{k: m[k] for k in ("MessageId", "Body")} | {"ReceiptHandle": m["handle"]} for m in found]}

    def _by_handle(self, url: str, handle: str) -> dict[str, Any] | None:
        return next((m for m in self.messages[url] if m["handle"] == handle), None)

    def change_message_visibility_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        self.visibility_calls.append(len(Entries))
        for entry in Entries:
            message = self._by_handle(QueueUrl, entry["ReceiptHandle"])
            assert message is not None, "a stale or deleted message's handle"
            message["visible_at"] = self.now + entry["VisibilityTimeout"]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        if self.delete_error is not None:
            raise self.delete_error
        for entry in Entries:
            message = self._by_handle(QueueUrl, entry["ReceiptHandle"])
            assert message is not None
            self.messages[QueueUrl].remove(message)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert 1 <= len(Entries) <= 10
        self.sent_batches.append(Entries)
        if self.send_error is not None:
            raise self.send_error
        failed = []
        for entry in Entries:
            if entry["MessageBody"] in self.refuse_bodies:
                failed.append({"Id": entry["Id"], "Code": "KMS.Disabled", "Message": "key", "SenderFault": True})
            else:
                self.put(QueueUrl, entry["MessageBody"])
        return {"Successful": [], "Failed": failed}


def target(sqs: FakeQueues, sns: Any = None, **variables: str) -> Any:
    env = {"CURRENCIES_DLQ_URL": DLQ, "CURRENCIES_TOPIC_ARN": TOPIC, "CURRENCIES_QUEUE": "currency-queue"}
    settings = Settings.from_env(env | variables)
    return SimpleNamespace(settings=settings, sqs=sqs, sns=sns or FakeSns(), describe=lambda: "a fake deployment")


@pytest.fixture
def queues() -> FakeQueues:
    """The DLQ with: two consumer letters (EUR, USD changes), two stream letters (EUR insert and modify),
    one stream letter without payload, one envelope the redrive policy moved, one foreign message."""
    fake = FakeQueues()
    eur, usd = change_from_record(RECORDS[0], NOW), change_from_record(RECORDS[2], NOW)
    fake.put(DLQ, consumer_letter(eur))
    fake.put(DLQ, consumer_letter(usd))
    fake.put(DLQ, stream_letter(RECORDS[0]))
    fake.put(DLQ, stream_letter(RECORDS[1]))
    fake.put(DLQ, huge_stream_letter())
    fake.put(DLQ, envelope(change_from_record(RECORDS[1], NOW).to_json()))
    fake.put(DLQ, "a message from elsewhere")
    return fake


def run(queues: FakeQueues, options: Options, sns: Any = None, **variables: str) -> tuple[Any, OperationMetrics]:
    metrics = OperationMetrics("redrive", None)
    report = redrive(target(queues, sns, **variables), metrics, options, clock=lambda: NOW)
    return report, metrics


def counted(metrics: OperationMetrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "currencies_operation_records", {"operation": "redrive", "outcome": outcome}
    )


def test_showing_reads_every_letter_and_leaves_them_all_visible(queues: FakeQueues) -> None:
    before = queues.bodies(DLQ)
    sns = FakeSns()
    report, metrics = run(queues, Options(), sns)
    assert report.mode == "show"
    assert len(report.entries) == 7
    assert report.complete
    assert queues.bodies(DLQ) == before
    assert len(queues.visible(DLQ)) == 7
    assert (queues.sent_batches, sns.calls) == ([], [])
    assert counted(metrics, "scanned") == 7
    assert counted(metrics, "written") == 0


def test_a_dry_run_plans_without_sending_or_deleting(queues: FakeQueues) -> None:
    before = queues.bodies(DLQ)
    sns = FakeSns()
    report, _ = run(queues, Options(dry_run=True), sns)
    assert [r.where for r in rows(report.entries, "dry_run")].count("stays") == 2
    assert {r.where for r in rows(report.entries, "dry_run")} == {"queue", "topic", "stays"}
    assert not report.complete  # the letter without payload and the foreign message cannot be re-sent
    assert (report.topic_arn, report.consumer_queue_url) == (TOPIC, QUEUE)
    assert queues.bodies(DLQ) == before
    assert len(queues.visible(DLQ)) == 7
    assert (queues.sent_batches, sns.calls) == ([], [])


def test_redrive_sends_each_letter_where_it_belongs_and_deletes_only_those(queues: FakeQueues) -> None:
    sns = FakeSns()
    report, metrics = run(queues, Options(everything=True), sns)
    eur, usd = change_from_record(RECORDS[0], NOW), change_from_record(RECORDS[2], NOW)
    modify = change_from_record(RECORDS[1], NOW)
    assert sorted(queues.bodies(QUEUE)) == sorted([eur.to_json(), usd.to_json(), modify.to_json()])
    assert sns.published == [eur.id, modify.id]
    assert report.resent == 5
    left = [parse_letter(m, b) for m, b in zip(queues.visible(DLQ), queues.bodies(DLQ), strict=True)]
    assert [(letter.source, letter.reason) for letter in left] == [
        ("stream", "change message is too large"),
        ("unknown", UNKNOWN_REASON),
    ]
    assert {entry.letter.message_id for entry in report.not_resent} == set(queues.visible(DLQ))
    assert not report.complete
    assert (counted(metrics, "written"), counted(metrics, "failed"), counted(metrics, "skipped")) == (5, 2, 0)


def test_filters_choose_and_the_rest_is_made_visible_again(queues: FakeQueues) -> None:
    sns = FakeSns()
    report, metrics = run(queues, Options(source="consumer"), sns)
    assert report.complete
    assert report.resent == 3  # two letters and the moved envelope
    assert sns.calls == []
    assert len(queues.visible(DLQ)) == 4 == len(queues.messages[DLQ])
    assert counted(metrics, "skipped") == 4
    report, _ = run(queues, Options(reason="kms"), sns)
    assert report.resent == 2
    assert len(sns.published) == 2
    assert len(queues.visible(DLQ)) == 2


def test_nothing_is_deleted_when_the_queue_refuses_the_send(queues: FakeQueues) -> None:
    before = queues.bodies(DLQ)
    queues.send_error = client_error("AccessDenied", operation="SendMessageBatch")
    report, metrics = run(queues, Options(source="consumer"))
    assert queues.bodies(DLQ) == before
    assert len(queues.visible(DLQ)) == 7
    assert report.resent == 0
    assert len(report.not_resent) == 3
    assert all("refused the batch" in (entry.failure or "") for entry in report.not_resent)
    assert counted(metrics, "failed") == 3


def test_an_entry_the_queue_refuses_stays_and_the_others_go(queues: FakeQueues) -> None:
    eur = change_from_record(RECORDS[0], NOW)
    queues.refuse_bodies = {eur.to_json()}
    report, _ = run(queues, Options(source="consumer"))
    assert report.resent == 2
    [stays] = report.not_resent
    assert stays.letter.payload == envelope(eur.to_json())
    assert "KMS.Disabled" in (stays.failure or "")
    assert envelope(eur.to_json()) in {parse_letter("", b).payload for b in queues.bodies(DLQ)}


def test_what_sns_refuses_or_never_takes_stays(queues: FakeQueues) -> None:
    eur = change_from_record(RECORDS[0], NOW)
    refusing = FakeSns(fail=lambda change_id, attempt: ("KMSDisabled", "key", True) if change_id == eur.id else None)
    report, _ = run(queues, Options(source="stream"), refusing)
    assert len(queues.messages[DLQ]) == 6
    assert report.resent == 1
    assert {entry.letter.example.split()[0] for entry in report.not_resent} == {"EUR", "USD"}
    down = FakeSns(fail=lambda change_id, attempt: ("InternalError", "down", False))
    before = queues.bodies(DLQ)
    report, _ = run(queues, Options(source="stream"), down)
    assert report.resent == 0
    assert queues.bodies(DLQ) == before


def test_a_failed_delete_is_reported_and_the_letter_stays_visible(queues: FakeQueues) -> None:
    queues.delete_error = client_error("InternalError", operation="DeleteMessageBatch")
    report, _ = run(queues, Options(source="consumer"))
    assert report.resent == 3
    assert report.complete
    assert [bool(entry.delete_error) for entry in report.chosen] == [True, True, True]
    assert len(report.to_json()["delete_failures"]) == 3
    assert len(queues.visible(DLQ)) == 7


def test_a_missing_consumer_queue_fails_its_letters_only(queues: FakeQueues) -> None:
    report, _ = run(queues, Options(everything=True), CURRENCIES_QUEUE="gone")
    assert report.resent == 2  # the stream letters
    assert sum("could not be found" in (entry.failure or "") for entry in report.not_resent) == 3


def test_reading_stops_at_the_limit(queues: FakeQueues) -> None:
    report, _ = run(queues, Options(limit=3))
    assert (len(report.entries), report.limit_reached) == (3, True)
    report, _ = run(queues, Options(limit=7))
    assert (len(report.entries), report.limit_reached) == (7, True)
    report, _ = run(queues, Options(limit=8))
    assert (len(report.entries), report.limit_reached) == (7, False)


def test_an_unreadable_queue_raises_and_an_unconfigured_one_too(queues: FakeQueues) -> None:
    def refuse(**_: Any) -> None:
        raise client_error("AccessDenied", operation="ReceiveMessage")

    queues.receive_message = refuse  # type: ignore[method-assign]
    with pytest.raises(QueueUnreadable, match="AccessDenied"):
        run(queues, Options(everything=True))
    with pytest.raises(QueueUnreadable, match="CURRENCIES_DLQ_URL"):
        run(queues, Options(), CURRENCIES_DLQ_URL="")


def test_held_letters_are_hidden_again_before_their_hiding_ends(queues: FakeQueues) -> None:
    held = HeldLetters(queues, DLQ, hide_s=300, clock=lambda: queues.now)
    letters, _ = held.receive(100, Quiet())
    assert len(letters) == 7
    queues.visibility_calls.clear()
    queues.now = 300 - EXTEND_BEFORE_S - 1
    held.keep_hidden()
    assert queues.visibility_calls == []
    queues.now = 300 - EXTEND_BEFORE_S + 1
    held.keep_hidden()
    assert queues.visibility_calls == [7]
    queues.now = 400  # past the first hiding, within the extended one
    assert queues.visible(DLQ) == []
    held.release()
    assert len(queues.visible(DLQ)) == 7


# -- The command --------------------------------------------------------------------------------


@pytest.fixture
def command(queues: FakeQueues, monkeypatch: pytest.MonkeyPatch) -> FakeSns:
    sns = FakeSns()
    monkeypatch.setattr(redrive_command, "resolve", lambda stage, local: target(queues, sns))
    return sns


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(redrive_command.redrive, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


def test_exit_status_and_json_of_each_mode(queues: FakeQueues, command: FakeSns) -> None:
    code, output = invoke("--json")
    assert (code, json.loads(output)["mode"], json.loads(output)["read"]) == (0, "show", 7)
    code, output = invoke("--json", "--dry-run", "--source", "consumer")
    assert (code, json.loads(output)["chosen"]) == (0, 3)
    code, output = invoke("--json", "--source", "stream")
    report = json.loads(output)
    assert (code, report["resent"], len(report["not_resent"])) == (1, 2, 1)
    assert "no payload" in report["not_resent"][0]["problem"]
    assert len(command.published) == 2


def test_the_readable_output_shows_groups_and_what_stays(queues: FakeQueues, command: FakeSns) -> None:
    code, output = invoke()
    assert code == 0
    assert "SNS refused the change: KMS" in output
    assert MOVED_REASON in output
    code, output = invoke("--all")
    assert code == 1
    assert "stays" in output
    assert "5 of 7 chosen letters re-sent" in output


def test_an_unreadable_queue_exits_two(queues: FakeQueues, command: FakeSns, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redrive_command, "resolve", lambda stage, local: target(queues, CURRENCIES_DLQ_URL=""))
    code, output = invoke("--json")
    assert code == 2
    assert "CURRENCIES_DLQ_URL" in json.loads(output)["error"]
