"""The change message (contract v1, docs/design.md) and its derivation from a stream record.

`Change` is what travels on the topic. It keeps the original example's `type` and
`data` fields so an old consumer still works, and adds what a correct consumer
needs: an idempotency key (`id`), an order (`version`) and both images.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Literal, NamedTuple

from chalicelib.api.currency import format_rate
from chalicelib.ordering import change_version, is_tombstone

SCHEMA = "currencies.change.v1"
# SNS's limit for one message (and for a whole publish_batch), less room for attributes.
MAX_MESSAGE_BYTES = 256 * 1024 - 1024
# DynamoDB numbers lie between 1E-130 and 9.99...E+125 in magnitude.
DYNAMODB_MIN_EXPONENT, DYNAMODB_MAX_EXPONENT = -130, 125
ChangeType = Literal["INSERT", "MODIFY", "REMOVE"]
CHANGE_TYPES: tuple[ChangeType, ...] = ("INSERT", "MODIFY", "REMOVE")


@cache
def _dynamodb_types() -> tuple[Any, type]:
    """boto3's typed-JSON deserializer and its Binary type, imported on first use: only the
    stream handler reads typed images, and importing boto3 costs every other cold start ~100 ms."""
    from boto3.dynamodb.types import Binary, TypeDeserializer  # noqa: PLC0415

    return TypeDeserializer(), Binary


class InvalidChange(ValueError):
    """A stream record or a message that cannot be turned into a `Change`; says why."""


class Change(NamedTuple):
    """One change message. A named tuple, not a frozen dataclass: the consumer builds one per
    message, and a tuple is built about five times faster (and is as immutable)."""

    type: ChangeType
    data: dict[str, str]
    id: str
    sequence: str
    version: int
    occurred_at: str
    published_at: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    schema: str = SCHEMA

    @property
    def symbol(self) -> str:
        return self.data["symbol"]

    def to_json(self) -> str:
        return json.dumps(self._asdict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Change:
        try:
            payload = json.loads(text)
        except (TypeError, ValueError, RecursionError) as error:
            raise InvalidChange(f"message is not JSON: {error}") from None
        return cls.from_payload(payload)

    @classmethod
    def from_payload(cls, payload: Any) -> Change:
        """A decoded message -> a checked Change (the consumer decodes with its own, faster, parser)."""
        if not isinstance(payload, dict):
            raise InvalidChange("message is not a JSON object")
        if payload.get("schema") != SCHEMA:
            raise InvalidChange(f"unsupported schema {payload.get('schema')!r}; expected {SCHEMA!r}")
        try:
            change = cls(*[payload[field] for field in _PAYLOAD_FIELDS])
        except KeyError as missing:
            raise InvalidChange(f"message lacks field {missing}") from None
        _check(change)
        return change


_PAYLOAD_FIELDS = tuple(field for field in Change._fields if field != "schema")


def change_from_record(record: dict[str, Any], published_at: datetime) -> Change:
    """Convert one Lambda-shaped DynamoDB stream record (typed images) into a `Change`.

    Anything about the record that stops it from becoming a valid, publishable change
    raises InvalidChange, so the relay can dead-letter that record alone.
    """
    try:
        change = _from_record(record, published_at)
    except InvalidChange:
        raise
    except Exception as error:  # a record shape no writer of ours produces
        raise InvalidChange(f"malformed stream record: {error!r}") from None
    size = len(change.to_json().encode())
    if size > MAX_MESSAGE_BYTES:
        raise InvalidChange(f"change message is {size} bytes; SNS takes at most {MAX_MESSAGE_BYTES}")
    return change


def _from_record(record: dict[str, Any], published_at: datetime) -> Change:
    event_type = record["eventName"]
    stream = record["dynamodb"]
    event_id = record["eventID"]
    sequence = str(stream["SequenceNumber"])
    occurred_s = float(stream["ApproximateCreationDateTime"])
    if event_type not in CHANGE_TYPES:
        raise InvalidChange(f"unknown eventName {event_type!r}")
    before = _image(stream.get("OldImage"))
    after = None if event_type == "REMOVE" else _image(stream.get("NewImage"))
    if (before if event_type == "REMOVE" else after) is None:
        raise InvalidChange(
            f"{event_type} record has no {'OldImage' if event_type == 'REMOVE' else 'NewImage'}; "
            "the stream must use NEW_AND_OLD_IMAGES"
        )
    # The image replaced, as a rate; None if there was none the API could read.
    previous = before if _readable(before) else None
    change_type: ChangeType
    if after is None or is_tombstone(after):  # deleted outside the API, or by the API (a tombstone)
        change_type, data, old, new = "REMOVE", {"symbol": (after or before or {})["symbol"]}, previous, None
    else:
        if not _readable(after):
            raise InvalidChange(f"item image is not a rate the API can read: {after}"[:1000])
        change_type = "INSERT" if event_type == "INSERT" or is_tombstone(before) else "MODIFY"
        data = {"symbol": after["symbol"], "rate": after["rate"]}
        old, new = (None if change_type == "INSERT" else previous), after
    change = Change(
        type=change_type,
        data=data,
        id=event_id,
        sequence=sequence,
        version=change_version(before, after, int(occurred_s), sequence),
        occurred_at=iso_utc(datetime.fromtimestamp(occurred_s, tz=UTC)),
        published_at=iso_utc(published_at),
        old=old,
        new=new,
    )
    _check(change)
    return change


def _image(typed: dict[str, Any] | None) -> dict[str, Any] | None:
    """Typed DynamoDB JSON -> plain JSON: a decimal rate as canonical text, whole numbers as ints."""
    if typed is None:
        return None
    deserializer, _ = _dynamodb_types()
    image = {name: deserializer.deserialize(value) for name, value in typed.items()}
    if "symbol" not in image:
        raise InvalidChange(f"item image lacks symbol: {sorted(image)}")
    plain = {name: _plain(value) for name, value in image.items()}
    rate = image.get("rate")
    if isinstance(rate, (Decimal, str)) and _is_stored_number(str(rate)):
        plain["rate"] = format_rate(Decimal(rate))
    return plain


def _readable(image: dict[str, Any] | None) -> bool:
    """Whether the API would show the image as a rate (chalicelib.api.store reads it so):
    a finite decimal rate, whole-number counters and stamps, no tombstone mark."""
    return (
        image is not None
        and not is_tombstone(image)
        and _is_stored_number(image.get("rate"))
        and all(type(image.get(name, 0)) is int for name in ("revision", "created_at", "updated_at"))
    )


def _is_decimal(text: Any) -> bool:
    try:
        return isinstance(text, str) and Decimal(text).is_finite()
    except ArithmeticError:
        return False


def _is_stored_number(text: Any) -> bool:
    """A decimal DynamoDB could store as a number (a string rate from another writer could
    be `1E+999999999`, which canonical text would spell out digit by digit)."""
    return _is_decimal(text) and DYNAMODB_MIN_EXPONENT <= Decimal(text).adjusted() <= DYNAMODB_MAX_EXPONENT


def _plain(value: Any) -> Any:
    """Any deserialised DynamoDB value as JSON: numbers exact, sets sorted, binary in base64."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else format_rate(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_plain(item) for item in value), key=str)
    if isinstance(value, _dynamodb_types()[1]):  # Binary
        return base64.b64encode(value.value).decode()
    return value


def _check(change: Change) -> None:
    """Reject a change whose fields a consumer could not use; the consumer is a trust boundary."""
    if change.type not in CHANGE_TYPES:
        raise InvalidChange(f"unknown change type {change.type!r}")
    if not isinstance(change.id, str) or not change.id:
        raise InvalidChange("change lacks an id")
    if not isinstance(change.data, dict) or not isinstance(change.data.get("symbol"), str) or not change.symbol:
        raise InvalidChange("change data lacks a symbol")
    if change.type != "REMOVE":
        _check_rate(change.data.get("rate"), "data.rate")
    if type(change.version) is not int or not 0 <= change.version < 2**63:
        raise InvalidChange(f"version {change.version!r} is not a 63-bit integer")
    if not isinstance(change.sequence, str) or not change.sequence.isdigit():
        raise InvalidChange(f"sequence {change.sequence!r} is not a string of digits")
    for name in ("occurred_at", "published_at"):
        moment = getattr(change, name)
        try:
            valid = datetime.fromisoformat(moment).tzinfo is not None
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise InvalidChange(f"{name} {moment!r} is not an ISO 8601 timestamp with a UTC offset")
    for name in ("old", "new"):
        image = getattr(change, name)
        if image is None:
            continue
        if not isinstance(image, dict):
            raise InvalidChange(f"{name} image must be an object or null")
        _check_rate(image.get("rate"), f"{name}.rate")


def _check_rate(rate: Any, where: str) -> None:
    if not _is_decimal(rate):
        raise InvalidChange(f"{where} {rate!r} is not a decimal string")


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, the form every timestamp in messages and documents takes."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
