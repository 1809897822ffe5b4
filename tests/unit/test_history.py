"""History query parameters: every bad value is a 400, never an exception the API turns into a 500."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.api.currency import ClientError
from chalicelib.api.history import MAX_VERSION, encode_cursor, history_search, parse_history_params, parse_moment


@pytest.mark.parametrize(
    "params",
    [
        {"size": "²"},
        {"size": "0"},
        {"size": "101"},
        {"size": "-1"},
        {"from": "0001-01-01T00:00:00+01:00"},
        {"to": "soon"},
        {"cursor": encode_cursor(["x", {"a": 1}])},
        {"cursor": encode_cursor([True, "id"])},
        {"cursor": "%%%"},
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"page": "2"},
    ],
)
def test_bad_parameters_are_client_errors(params: dict[str, str]) -> None:
    with pytest.raises(ClientError) as caught:
        parse_history_params("EUR", params)
    assert caught.value.status == 400


@given(params=st.dictionaries(st.sampled_from(["from", "to", "size", "cursor", "at"]), st.text(max_size=40)))
def test_any_parameters_parse_or_are_a_400(params: dict[str, str]) -> None:
    status = 200
    try:
        parse_history_params("EUR", params)
    except ClientError as error:
        status = error.status
    assert status in (200, 400)


def test_a_cursor_round_trips_into_search_after() -> None:
    query = parse_history_params("EUR", {"size": "5", "cursor": encode_cursor([1_800_000_000_000_000_002, "abc"])})
    body = history_search(query)
    assert body["search_after"] == [1_800_000_000_000_000_002, "abc"]
    assert body["size"] == 5


def test_a_moment_without_offset_is_utc() -> None:
    assert parse_moment("2026-11-26T12:00:00", "at").isoformat() == "2026-11-26T12:00:00+00:00"


def raw_cursor(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode()


BAD_CURSORS = {
    "nested_json": raw_cursor(b"[" * 100_000),  # RecursionError in json.loads
    "huge_integer": raw_cursor(b"[" + b"9" * 5000 + b', "id"]'),  # beyond int()'s digit limit
    "version_above_long": encode_cursor([MAX_VERSION, "id"]),
    "negative_version": encode_cursor([-1, "id"]),
    "lone_surrogate": encode_cursor([1, "\ud800"]),  # spelled as a JSON escape
    "not_utf8": raw_cursor(b'[1, "\xff"]'),
    "non_ascii_around_a_valid_cursor": "\u00e9" + encode_cursor([1, "id"]),
    "padding_dropped": encode_cursor([1, "abcd"]).rstrip("="),
    "empty": "",
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
def test_bad_cursors_are_client_errors(cursor: str) -> None:
    with pytest.raises(ClientError) as caught:
        parse_history_params("EUR", {"cursor": cursor})
    assert (caught.value.status, caught.value.code) == (400, "invalid_parameter")


def test_the_largest_version_is_a_valid_cursor() -> None:
    last = [MAX_VERSION - 1, "id"]
    assert parse_history_params("EUR", {"cursor": encode_cursor(last)}).after == last


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=60)  # surrogates included


@given(
    st.one_of(
        ANY_TEXT,
        st.binary(max_size=60).map(raw_cursor),
        JSON_VALUES.map(lambda value: raw_cursor(json.dumps(value).encode())),
        st.integers(0, 200).map(lambda depth: raw_cursor(b"[" * depth * 50 + b"]" * depth * 50)),
        st.tuples(st.integers(), ANY_TEXT).map(lambda values: encode_cursor(list(values))),
    )
)
def test_any_cursor_parses_or_is_a_400(cursor: str) -> None:
    """Whatever a client puts in `cursor`, the answer is a query or a ClientError, never another exception."""
    try:
        query = parse_history_params("EUR", {"cursor": cursor})
    except ClientError as error:
        status = error.status
    else:
        status = 200
        json.dumps(history_search(query), ensure_ascii=False).encode()  # engine clients send UTF-8
    assert status in (200, 400)
