"""One dead-letter format for every source, always within SQS's limit, and what happens when the DLQ refuses."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.deadletter import MAX_IDENTIFIER_CHARS, MAX_REASON_CHARS, DeadLetterRefused, dead_letter
from tests.unit.aws_fakes import LIMIT_BYTES, FakeSqs, message_size

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/currency-dlq"
CHANGE = {"schema": "currencies.change.v1", "id": "ev-1", "sequence": "42", "type": "INSERT", "data": {"symbol": "EUR"}}
RECORD = {
    "eventID": "ev-1",
    "eventName": "INSERT",
    "dynamodb": {"Keys": {"symbol": {"S": "EUR"}}, "SequenceNumber": "42", "NewImage": {"symbol": {"S": "EUR"}}},
}


def envelope(message: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "sns-7", "TopicArn": "arn:topic", "Message": message})


def test_a_stream_record_is_kept_whole_with_its_identifiers() -> None:
    sqs, body = FakeSqs(), json.dumps(RECORD)
    dead_letter(sqs, URL, body, reason="unknown eventName", source="stream")
    (message,) = sqs.messages
    assert json.loads(message["Body"]) == {
        "source": "stream",
        "reason": "unknown eventName",
        "payload": body,
        "size": len(body),
        "keys": {"symbol": {"S": "EUR"}},
        "event_id": "ev-1",
        "sequence": "42",
        "event_name": "INSERT",
    }
    assert message["MessageAttributes"] == {
        "reason": {"DataType": "String", "StringValue": "unknown eventName"},
        "source": {"DataType": "String", "StringValue": "stream"},
    }


def test_a_consumer_message_is_kept_as_received_with_the_ids_inside_it() -> None:
    """The consumer's call, `dead_letter(body, reason)` through clients.dead_letter_queue, is unchanged."""
    sqs, body = FakeSqs(), envelope(json.dumps(CHANGE))
    dead_letter(sqs, URL, body, reason="invalid message", source="consumer")
    assert sqs.letters() == [
        {
            "source": "consumer",
            "reason": "invalid message",
            "payload": body,
            "size": len(body),
            "message_id": "sns-7",
            "keys": {"symbol": {"S": "EUR"}},
            "event_id": "ev-1",
            "sequence": "42",
        }
    ]


@pytest.mark.parametrize("body", ["not json", "[1, 2]", envelope("not json"), json.dumps({"id": "x" * 10_000}), ""])
def test_a_message_with_nothing_usable_inside_is_still_kept(body: str) -> None:
    sqs = FakeSqs()
    dead_letter(sqs, URL, body, reason="invalid message", source="consumer")
    (letter,) = sqs.letters()
    assert letter["payload"] == body
    assert all(len(json.dumps(value)) <= MAX_IDENTIFIER_CHARS for value in letter.values() if value != body)


def test_a_payload_too_large_for_sqs_goes_as_its_identifiers_and_is_logged_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An SNS envelope just under 256 KiB grows past it once escaped into a letter."""
    change = json.dumps({**CHANGE, "new": {"note": '"' * 30_000 + "x" * 100_000}})
    body = envelope(change)
    assert len(body) < LIMIT_BYTES < len(json.dumps(body))
    sqs = FakeSqs()
    with caplog.at_level(logging.ERROR, logger="chalicelib.deadletter"):
        dead_letter(sqs, URL, body, reason="indexing failed", source="consumer")
    (message,) = sqs.messages
    assert message_size(message["Body"], message["MessageAttributes"]) <= LIMIT_BYTES
    letter = json.loads(message["Body"])
    assert letter["payload"] is None
    assert (letter["message_id"], letter["event_id"], letter["sequence"]) == ("sns-7", "ev-1", "42")
    assert letter["size"] == len(body)
    (line,) = caplog.records
    assert line.payload == body  # type: ignore[attr-defined]


def test_a_queue_that_refuses_the_letter_gets_it_again_without_the_payload(caplog: pytest.LogCaptureFixture) -> None:
    """A DLQ configured for 64 KiB messages: the second attempt leaves the payload out."""
    body = json.dumps({**RECORD, "note": "x" * 100_000})
    sqs = FakeSqs(max_bytes=64 * 1024)
    with caplog.at_level(logging.ERROR, logger="chalicelib.deadletter"):
        dead_letter(sqs, URL, body, reason="too large", source="stream")
    assert sqs.attempts == 2
    (letter,) = sqs.letters()
    assert letter["payload"] is None
    assert letter["event_id"] == "ev-1"
    assert [line.payload for line in caplog.records] == [body]  # type: ignore[attr-defined]


def test_a_queue_that_refuses_twice_raises() -> None:
    sqs = FakeSqs(refuse=[True, True, False])
    with pytest.raises(DeadLetterRefused, match="KMS"):
        dead_letter(sqs, URL, json.dumps(RECORD), reason="unknown eventName", source="stream")
    assert sqs.attempts == 2
    assert sqs.messages == []


def test_reasons_are_bounded_and_never_empty() -> None:
    sqs = FakeSqs()
    dead_letter(sqs, URL, "a", reason="r" * 5000, source="consumer")
    dead_letter(sqs, URL, "b", reason="", source="consumer")
    dead_letter(sqs, URL, "c", reason="bad \x00 \ufffe \ud800", source="consumer")  # SQS refuses these
    expected = ["r" * MAX_REASON_CHARS, "no reason given", "bad \ufffd \ufffd \ufffd"]
    assert [m["MessageAttributes"]["reason"]["StringValue"] for m in sqs.messages] == expected
    assert [letter["reason"] for letter in sqs.letters()] == expected


@given(
    st.text(
        alphabet=st.sampled_from(['"', "\\", "a", "\u00e9", "\u20ac", "\U0001f4b1", "\x00", "\ud800"]), max_size=300
    ),
    st.integers(0, LIMIT_BYTES),
    st.text(max_size=1200),
)
def test_every_letter_fits_in_sqs_and_keeps_the_payload_whenever_it_can(pattern: str, length: int, reason: str) -> None:
    """Bodies of any size up to 256 KiB, with characters that escaping grows: the letter always fits."""
    body = (pattern or "a") * (length // max(len((pattern or "a").encode(errors="surrogatepass")), 1))
    sqs = FakeSqs()
    dead_letter(sqs, URL, body, reason=reason, source="consumer")
    (message,) = sqs.messages
    assert message["Body"].isascii()
    assert message_size(message["Body"], message["MessageAttributes"]) <= LIMIT_BYTES
    letter = json.loads(message["Body"])
    assert letter["payload"] in (body, None)
    with_payload = json.dumps({**letter, "payload": body}, separators=(",", ":"))
    assert (letter["payload"] is None) == (message_size(with_payload, message["MessageAttributes"]) > LIMIT_BYTES)
