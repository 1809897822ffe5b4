"""History query parameters: every bad value is a 400, never an exception the API turns into a 500."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.currency import ClientError
from chalicelib.history import encode_cursor, history_search, parse_history_params, parse_moment


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
