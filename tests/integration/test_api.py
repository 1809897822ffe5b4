"""The REST API over real HTTP (Chalice's local gateway) with moto's DynamoDB behind it.

Whatever a client sends, the answer is a 4xx with `{"error", "message"}` or a success;
never a 5xx. Symbols here avoid USD/EUR, which the walkthrough test owns.
"""

from __future__ import annotations

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from currencies_local.pipeline import LocalPipeline


@pytest.fixture(scope="module")
def api(pipeline: LocalPipeline) -> str:
    return pipeline.api_url


def assert_client_error(response: requests.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]


BAD_BODIES = [
    (b"{not json", 400, "malformed_json"),
    (b"[1, 2]", 400, "invalid_body"),
    (b'"GBP"', 400, "invalid_body"),
    (b"", 400, "missing_body"),
    (b'{"symbol": "GBP"}', 400, "missing_field"),
    (b'{"rate": "1.2"}', 400, "missing_field"),
    (b'{"symbol": "GBP", "rate": "1.2", "note": "x"}', 400, "unknown_field"),
    (b'{"symbol": "GBP", "rate": 1e400}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": "1e400"}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": NaN}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": "NaN"}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": Infinity}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": -1}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": 0}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": "0.0"}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": true}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": 1.2345678901234567891}', 400, "invalid_rate"),
    # Once rounded to 28 digits (to 1, and to 1e15, above the maximum) and stored.
    (b'{"symbol": "GBP", "rate": 1.00000000000000000000000000001}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": "1.00000000000000000000000000001"}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": 999999999999999.99999999999999}', 400, "invalid_rate"),
    (b'{"symbol": "GBP", "rate": "999999999999999.99999999999999"}', 400, "invalid_rate"),
    (b'{"symbol": "G1P", "rate": "1.2"}', 400, "invalid_symbol"),
    (b'{"symbol": "GBPX", "rate": "1.2"}', 400, "invalid_symbol"),
    (b'{"symbol": 123, "rate": "1.2"}', 400, "invalid_symbol"),
    (b"\xff\xfe\x00", 400, "malformed_json"),
    (b"[" * 4000, 400, "malformed_json"),
    (b'{"symbol": "GBP", "rate": 1e999999999999999999999}', 400, "invalid_number"),
    (b'{"symbol": "GBP", "rate": "' + b"1" * 5000 + b'"}', 413, "body_too_large"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES, ids=[c for _, _, c in BAD_BODIES])
def test_bad_post_bodies_get_a_json_4xx(api: str, body: bytes, status: int, code: str) -> None:
    assert_client_error(requests.post(f"{api}/currency", data=body, timeout=10), status, code)


def test_nothing_bad_is_stored(api: str) -> None:
    assert requests.get(f"{api}/currency/GBP", timeout=10).status_code == 404


def test_rates_round_trip_exactly_as_decimals(api: str) -> None:
    created = requests.post(f"{api}/currency", json={"symbol": "jpy", "rate": 0.1}, timeout=10)
    assert created.status_code == 201, created.text
    assert created.json()["symbol"] == "JPY"
    assert created.json()["rate"] == "0.1"
    precise = "123456789.123456789"
    updated = requests.put(f"{api}/currency/JPY", json={"rate": precise}, timeout=10)
    assert updated.status_code == 200, updated.text
    assert updated.json() | {"updated_at": 0} == {"symbol": "JPY", "rate": precise, "revision": 2, "updated_at": 0}
    assert requests.get(f"{api}/currency/jpy", timeout=10).json()["rate"] == precise
    # Trailing zeros beyond the 28th digit are not significant: accepted, and the same number.
    padded = requests.put(f"{api}/currency/JPY", json={"rate": "999999999999999.9" + "0" * 30}, timeout=10)
    assert padded.status_code == 200, padded.text
    assert padded.json()["rate"] == "999999999999999.9"


def test_put_rejects_a_body_symbol_that_differs_from_the_path(api: str) -> None:
    response = requests.put(f"{api}/currency/CHF", json={"symbol": "SEK", "rate": "1"}, timeout=10)
    assert_client_error(response, 400, "symbol_mismatch")


def test_delete_of_an_absent_symbol_is_404(api: str) -> None:
    assert_client_error(requests.delete(f"{api}/currency/XAU", timeout=10), 404, "not_found")


def test_bad_path_symbol_is_400(api: str) -> None:
    assert_client_error(requests.get(f"{api}/currency/12345", timeout=10), 400, "invalid_symbol")


def test_unsupported_content_type_is_415_in_our_error_shape(api: str) -> None:
    response = requests.post(f"{api}/currency", data=b"<x/>", headers={"Content-Type": "application/xml"}, timeout=10)
    assert_client_error(response, 415, "unsupported_media_type")


def test_unsupported_method_is_405_in_our_error_shape(api: str) -> None:
    assert_client_error(requests.patch(f"{api}/currency/CHF", json={}, timeout=10), 405, "method_not_allowed")


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode)))
def test_no_body_causes_a_server_error(api: str, body: bytes) -> None:
    response = requests.post(f"{api}/currency", data=body, timeout=10)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "message"}
