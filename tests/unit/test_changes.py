"""Unit tests for chalicelib.stream.changes: stream record -> change message, and the message contract."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.stream.changes import SCHEMA, Change, InvalidChange, change_from_record

PUBLISHED_AT = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
CREATED_AT_MS = 1_700_000_000_123
# 1_700_000_000 s is 2023-11-14T22:13:20Z.
OCCURRED_S = 1_700_000_000
SEQUENCE = "4421584500000000017450439091"  # longer than 64 bits, as real sequence numbers are


def typed_item(rate: str, revision: int, symbol: str = "EUR", updated_at: int = CREATED_AT_MS) -> dict[str, Any]:
    return {
        "symbol": {"S": symbol},
        "rate": {"N": rate},
        "revision": {"N": str(revision)},
        "created_at": {"N": str(CREATED_AT_MS)},
        "updated_at": {"N": str(updated_at)},
    }


def stream_record(
    event: str, *, old: dict[str, Any] | None = None, new: dict[str, Any] | None = None, when: float = OCCURRED_S
) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {
        "Keys": {"symbol": {"S": "EUR"}},
        "SequenceNumber": SEQUENCE,
        "ApproximateCreationDateTime": when,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "SizeBytes": 100,
    }
    if old is not None:
        dynamodb["OldImage"] = old
    if new is not None:
        dynamodb["NewImage"] = new
    return {
        "eventID": "c81e728d9d4c2f636f067f89cc14862c",
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": dynamodb,
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/currency/stream/2024",
    }


# --- change_from_record -----------------------------------------------------------------


def test_insert_record() -> None:
    change = change_from_record(stream_record("INSERT", new=typed_item("1.08", 1)), PUBLISHED_AT)
    assert change.type == "INSERT"
    assert change.data == {"symbol": "EUR", "rate": "1.08"}
    assert change.id == "c81e728d9d4c2f636f067f89cc14862c"
    assert change.sequence == SEQUENCE
    assert change.version == 1_700_000_000_123_000_001  # created_at * 10**6 + revision 1
    assert change.occurred_at == "2023-11-14T22:13:20.000Z"
    assert change.published_at == "2024-05-01T12:30:15.250Z"
    assert change.old is None
    assert change.new == {
        "symbol": "EUR",
        "rate": "1.08",
        "revision": 1,
        "created_at": CREATED_AT_MS,
        "updated_at": CREATED_AT_MS,
    }
    assert change.schema == SCHEMA


def test_modify_record_carries_both_images_and_the_new_version() -> None:
    record = stream_record("MODIFY", old=typed_item("1.08", 4), new=typed_item("1.09", 5, updated_at=CREATED_AT_MS + 9))
    change = change_from_record(record, PUBLISHED_AT)
    assert change.type == "MODIFY"
    assert change.data == {"symbol": "EUR", "rate": "1.09"}
    assert change.version == 1_700_000_000_123_000_005
    assert change.old is not None
    assert change.new is not None
    assert (change.old["rate"], change.old["revision"]) == ("1.08", 4)
    assert (change.new["rate"], change.new["revision"], change.new["updated_at"]) == ("1.09", 5, CREATED_AT_MS + 9)


def test_remove_record_has_symbol_only_and_beats_the_deleted_image() -> None:
    change = change_from_record(stream_record("REMOVE", old=typed_item("1.08", 4)), PUBLISHED_AT)
    assert change.type == "REMOVE"
    assert change.data == {"symbol": "EUR"}
    assert change.version == 1_700_000_000_123_000_005  # deleted image's version + 1
    assert change.new is None
    assert change.old is not None
    assert change.old["rate"] == "1.08"


def test_fractional_stream_time_keeps_milliseconds() -> None:
    change = change_from_record(stream_record("INSERT", new=typed_item("1", 1), when=OCCURRED_S + 0.5), PUBLISHED_AT)
    assert change.occurred_at == "2023-11-14T22:13:20.500Z"


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("1.5", "1.5"),
        ("100", "100"),
        ("0.000000000000000001", "0.000000000000000001"),
        ("123456789.123456789", "123456789.123456789"),  # 18 digits: a float would round it
        ("999999999999999.999", "999999999999999.999"),
    ],
)
def test_rates_stay_exact_decimal_text(stored: str, expected: str) -> None:
    change = change_from_record(stream_record("INSERT", new=typed_item(stored, 1)), PUBLISHED_AT)
    assert change.data["rate"] == expected
    assert change.new is not None
    assert change.new["rate"] == expected


def test_stored_rate_with_trailing_zero_comes_out_canonical() -> None:
    change = change_from_record(stream_record("INSERT", new=typed_item("1.10", 1)), PUBLISHED_AT)
    assert change.data["rate"] == "1.1"


def without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in mapping.items() if name != key}


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(stream_record("UPDATE", new=typed_item("1", 1)), id="unknown-event-name"),
        pytest.param(stream_record("INSERT"), id="insert-without-new-image"),
        pytest.param(stream_record("MODIFY", old=typed_item("1", 1)), id="modify-without-new-image"),
        pytest.param(stream_record("REMOVE", new=typed_item("1", 1)), id="remove-without-old-image"),
        pytest.param(
            stream_record("INSERT", new=without(typed_item("1", 1), "rate")),
            id="image-without-rate",
        ),
        pytest.param(
            stream_record("INSERT", new=without(typed_item("1", 1), "symbol")),
            id="image-without-symbol",
        ),
        pytest.param(without(stream_record("INSERT", new=typed_item("1", 1)), "dynamodb"), id="no-dynamodb-key"),
        pytest.param(without(stream_record("INSERT", new=typed_item("1", 1)), "eventName"), id="no-event-name"),
        pytest.param(without(stream_record("INSERT", new=typed_item("1", 1)), "eventID"), id="no-event-id"),
        pytest.param(
            stream_record("INSERT", new={"symbol": {"S": "EUR"}, "rate": {"X": "1"}}),
            id="unknown-attribute-type",
        ),
    ],
)
def test_unconvertible_records_raise_invalid_change(record: dict[str, Any]) -> None:
    with pytest.raises(InvalidChange):
        change_from_record(record, PUBLISHED_AT)


def test_datetime_stream_time_is_refused() -> None:
    """boto3 returns a datetime; Lambda sends epoch seconds. Unconverted input must be an InvalidChange."""
    record = stream_record("INSERT", new=typed_item("1", 1))
    record["dynamodb"]["ApproximateCreationDateTime"] = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidChange, match="malformed"):
        change_from_record(record, PUBLISHED_AT)


def test_unknown_event_name_is_named_in_the_error() -> None:
    with pytest.raises(InvalidChange, match="UPDATE"):
        change_from_record(stream_record("UPDATE", new=typed_item("1", 1)), PUBLISHED_AT)


# --- tombstones and items other writers left unreadable --------------------------------


def tombstone(revision: int) -> dict[str, Any]:
    """What RateStore.delete leaves: no rate, the counter kept, one revision up."""
    return {**without(typed_item("1", revision), "rate"), "deleted": {"BOOL": True}}


def test_a_delete_by_the_api_is_a_remove_one_above_the_deleted_image() -> None:
    record = stream_record("MODIFY", old=typed_item("1.08", 4), new=tombstone(5))
    change = change_from_record(record, PUBLISHED_AT)
    assert (change.type, change.data, change.new) == ("REMOVE", {"symbol": "EUR"}, None)
    assert change.old is not None
    assert change.old["rate"] == "1.08"
    # The same version a REMOVE record of the live item gets.
    assert (
        change.version == change_from_record(stream_record("REMOVE", old=typed_item("1.08", 4)), PUBLISHED_AT).version
    )
    assert change.version == 1_700_000_000_123_000_005


def test_a_recreate_from_a_tombstone_is_an_insert_continuing_the_count() -> None:
    change = change_from_record(stream_record("MODIFY", old=tombstone(5), new=typed_item("2", 6)), PUBLISHED_AT)
    assert (change.type, change.data, change.old) == ("INSERT", {"symbol": "EUR", "rate": "2"}, None)
    assert change.version == 1_700_000_000_123_000_006


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(stream_record("REMOVE", old=tombstone(5)), id="tombstone-removed-outside-the-api"),
        pytest.param(stream_record("INSERT", new=tombstone(5)), id="tombstone-written-outside-the-api"),
        pytest.param(stream_record("MODIFY", old=tombstone(5), new=tombstone(6)), id="tombstone-rewritten"),
    ],
)
def test_tombstones_written_or_removed_by_others_are_removes_of_nothing(record: dict[str, Any]) -> None:
    """Harmless for the indices (the symbol is already deleted there) and nothing to dead-letter."""
    change = change_from_record(record, PUBLISHED_AT)
    assert (change.type, change.data, change.old, change.new) == ("REMOVE", {"symbol": "EUR"}, None, None)
    assert change.version > 1_700_000_000_123_000_004


@pytest.mark.parametrize(
    "unreadable",
    [
        pytest.param(without(typed_item("1", 4), "rate"), id="no-rate"),
        pytest.param({**typed_item("1", 4), "rate": {"S": "abc"}}, id="rate-not-a-number"),
        pytest.param({**typed_item("1", 4), "rate": {"S": "1E+999999999"}}, id="rate-out-of-range"),
        pytest.param({**typed_item("1", 4), "revision": {"S": "abc"}}, id="revision-not-a-number"),
    ],
)
def test_removing_an_item_others_left_unreadable_is_a_remove_without_old_image(unreadable: dict[str, Any]) -> None:
    """The API deletes such an item; the indices must hear of it, so the change must convert."""
    removed_by_api = stream_record("MODIFY", old=unreadable, new=tombstone(5))
    removed_by_others = stream_record("REMOVE", old=unreadable)
    for record in (removed_by_api, removed_by_others):
        change = change_from_record(record, PUBLISHED_AT)
        assert (change.type, change.data, change.old, change.new) == ("REMOVE", {"symbol": "EUR"}, None, None)


def test_an_update_repairing_an_unreadable_item_is_a_modify_without_old_image() -> None:
    record = stream_record("MODIFY", old=without(typed_item("1", 4), "rate"), new=typed_item("1.5", 5))
    change = change_from_record(record, PUBLISHED_AT)
    assert (change.type, change.data, change.old) == ("MODIFY", {"symbol": "EUR", "rate": "1.5"}, None)


@pytest.mark.parametrize("rate", ["abc", "1E+999999999", "NaN"])
def test_a_written_item_with_an_unreadable_rate_is_refused(rate: str) -> None:
    with pytest.raises(InvalidChange, match="rate"):
        change_from_record(stream_record("INSERT", new={**typed_item("1", 1), "rate": {"S": rate}}), PUBLISHED_AT)


def test_a_string_rate_from_another_writer_comes_out_canonical() -> None:
    change = change_from_record(
        stream_record("INSERT", new={**typed_item("1", 1), "rate": {"S": "1.10"}}), PUBLISHED_AT
    )
    assert change.data["rate"] == "1.1"


# --- the message contract ---------------------------------------------------------------

symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)
rates = st.builds(
    lambda coefficient, exponent: f"{coefficient}E{exponent}",
    st.integers(1, 10**18 - 1),
    st.integers(-18, -1),
).map(lambda text: format(Decimal(text).normalize(), "f"))
versions = st.integers(0, 2**63 - 1)


@st.composite
def changes(draw: st.DrawFn) -> Change:
    kind = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"]))
    symbol = draw(symbols)
    old_rate, new_rate = draw(rates), draw(rates)
    revision = draw(st.integers(1, 10**6 - 1))
    image = {"symbol": symbol, "revision": revision, "created_at": CREATED_AT_MS, "updated_at": CREATED_AT_MS}
    old = None if kind == "INSERT" else {**image, "rate": old_rate}
    new = None if kind == "REMOVE" else {**image, "rate": new_rate}
    data = {"symbol": symbol} if kind == "REMOVE" else {"symbol": symbol, "rate": new_rate}
    return Change(
        type=kind,
        data=data,
        id=draw(st.text(alphabet="0123456789abcdef", min_size=1, max_size=32)),
        sequence=str(draw(st.integers(0, 10**40 - 1))),
        version=draw(versions),
        occurred_at="2023-11-14T22:13:20.000Z",
        published_at="2024-05-01T12:30:15.250Z",
        old=old,
        new=new,
    )


@given(changes())
def test_to_json_from_json_round_trip(change: Change) -> None:
    """What the stream handler publishes, the consumer must read back unchanged."""
    text = change.to_json()
    assert json.loads(text)["schema"] == SCHEMA
    assert Change.from_json(text) == change


@given(changes())
def test_rates_travel_as_strings_not_numbers(change: Change) -> None:
    """A JSON number would be read back as a float by most consumers."""
    payload = json.loads(change.to_json())
    if change.type != "REMOVE":
        assert payload["data"]["rate"] == change.data["rate"]
        assert isinstance(payload["data"]["rate"], str)


def valid_payload() -> dict[str, Any]:
    change = Change(
        type="MODIFY",
        data={"symbol": "EUR", "rate": "1.1"},
        id="abc",
        sequence="42",
        version=7,
        occurred_at="2023-11-14T22:13:20.000Z",
        published_at="2023-11-14T22:13:21.000Z",
        old={"symbol": "EUR", "rate": "1"},
        new={"symbol": "EUR", "rate": "1.1"},
    )
    return change._asdict()


def test_valid_payload_is_accepted() -> None:
    """Guards the rejection tests below: their only difference from this payload is the fault."""
    assert Change.from_json(json.dumps(valid_payload())).version == 7


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "",
        "[]",
        "null",
        '"a string"',
        json.dumps({**valid_payload(), "schema": "currencies.change.v2"}),
        json.dumps(without(valid_payload(), "schema")),
        json.dumps({**valid_payload(), "type": "UPSERT"}),
        json.dumps({**valid_payload(), "data": {"rate": "1"}}),
        json.dumps({**valid_payload(), "data": "EUR"}),
        json.dumps({**valid_payload(), "data": {"symbol": "EUR"}}),  # MODIFY without a rate
        json.dumps({**valid_payload(), "id": ""}),
        json.dumps({**valid_payload(), "id": 5}),
    ],
)
def test_from_json_rejects_invalid_messages(text: str) -> None:
    with pytest.raises(InvalidChange):
        Change.from_json(text)


@pytest.mark.parametrize("field", [name for name in Change._fields if name != "schema"])
def test_from_json_rejects_a_missing_field(field: str) -> None:
    with pytest.raises(InvalidChange, match=field):
        Change.from_json(json.dumps(without(valid_payload(), field)))


@pytest.mark.parametrize("version", [-1, 2**63, 2**64, 1.5, 7.0, "7", None])
def test_from_json_rejects_bad_versions(version: object) -> None:
    with pytest.raises(InvalidChange, match="version"):
        Change.from_json(json.dumps({**valid_payload(), "version": version}))


def test_from_json_rejects_a_boolean_version() -> None:
    with pytest.raises(InvalidChange, match="version"):
        Change.from_json(json.dumps({**valid_payload(), "version": True}))


def test_from_json_accepts_the_largest_version() -> None:
    assert Change.from_json(json.dumps({**valid_payload(), "version": 2**63 - 1})).version == 2**63 - 1


def test_nested_sets_and_binary_attributes_become_json() -> None:
    """Items written by other tools may hold maps, lists, sets and bytes: the change must still serialise."""
    new = typed_item("1.25", 3) | {
        "meta": {"M": {"weight": {"N": "0.5"}, "tags": {"SS": ["b", "a"]}, "raw": {"B": b"\x00\x01"}}},
        "history": {"L": [{"N": "2"}, {"NS": ["3", "1.5"]}]},
    }
    change = change_from_record(stream_record("MODIFY", old=typed_item("1.2", 2), new=new), PUBLISHED_AT)
    assert change.new is not None
    assert change.new["meta"] == {"weight": "0.5", "tags": ["a", "b"], "raw": "AAE="}
    assert change.new["history"] == [2, ["1.5", 3]]
    assert Change.from_json(change.to_json()) == change


def test_a_change_too_large_for_sns_is_refused() -> None:
    new = typed_item("1.25", 3) | {"note": {"S": "x" * 300_000}}
    with pytest.raises(InvalidChange, match="SNS"):
        change_from_record(stream_record("MODIFY", old=typed_item("1.2", 2), new=new), PUBLISHED_AT)
