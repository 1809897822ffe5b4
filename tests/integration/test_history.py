"""History API, answered from the events index of the real engine, fed by the real pipeline."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from chalice.app import Request

from chalicelib.api import handlers
from chalicelib.api.history import MAX_VERSION, HistoryReader, encode_cursor
from chalicelib.config import SearchSettings
from chalicelib.sinks.sink import connect
from currencies_local.pipeline import LocalPipeline
from currencies_local.processes import free_port
from tests.integration.support import eventually


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def hkd_history(pipeline: LocalPipeline, search) -> dict[str, datetime]:
    """HKD: rates 7.80, 7.81, 7.82, 7.83, 7.84 a second apart, then deleted; the moments between."""
    moments = {"before": datetime.now(UTC) - timedelta(seconds=1)}
    for n, rate in enumerate(["7.80", "7.81", "7.82", "7.83", "7.84"]):
        response = requests.post(f"{pipeline.api_url}/currency", json={"symbol": "HKD", "rate": rate}, timeout=10)
        assert response.status_code in (200, 201)
        time.sleep(1.1)
        moments[f"after_{n}"] = datetime.now(UTC)
    assert requests.delete(f"{pipeline.api_url}/currency/HKD", timeout=10).status_code == 200
    eventually(lambda: search.events_for(["HKD"]), lambda events: len(events) == 6)
    return moments


def test_history_is_newest_first_and_pages_with_a_cursor(pipeline: LocalPipeline, hkd_history) -> None:
    url = f"{pipeline.api_url}/currency/hkd/history"
    first = requests.get(url, params={"size": 4}, timeout=10).json()
    assert [(c["type"], c["rate"]) for c in first["changes"]] == [
        ("REMOVE", None),
        ("MODIFY", "7.84"),
        ("MODIFY", "7.83"),
        ("MODIFY", "7.82"),
    ]
    assert first["changes"][1]["previous_rate"] == "7.83"
    second = requests.get(url, params={"size": 4, "cursor": first["next_cursor"]}, timeout=10).json()
    assert [(c["type"], c["rate"]) for c in second["changes"]] == [("MODIFY", "7.81"), ("INSERT", "7.8")]
    assert second["next_cursor"] is None
    versions = [c["version"] for c in first["changes"] + second["changes"]]
    assert versions == sorted(versions, reverse=True)


def test_history_window(pipeline: LocalPipeline, hkd_history) -> None:
    window = {"from": iso(hkd_history["after_1"]), "to": iso(hkd_history["after_3"])}
    page = requests.get(f"{pipeline.api_url}/currency/HKD/history", params=window, timeout=10).json()
    assert [c["rate"] for c in page["changes"]] == ["7.83", "7.82"]


def test_rate_in_force_at_a_moment(pipeline: LocalPipeline, hkd_history) -> None:
    def at(moment: datetime) -> requests.Response:
        return requests.get(f"{pipeline.api_url}/currency/HKD", params={"at": iso(moment)}, timeout=10)

    assert at(hkd_history["after_0"]).json()["rate"] == "7.8"
    assert at(hkd_history["after_2"]).json()["rate"] == "7.82"
    assert at(hkd_history["after_4"]).json()["rate"] == "7.84"
    assert at(hkd_history["before"]).status_code == 404
    assert at(datetime.now(UTC)).json()["error"] == "not_found"  # deleted by now


@pytest.mark.parametrize(
    "params",
    [{"size": "0"}, {"size": "101"}, {"size": "x"}, {"from": "yesterday"}, {"cursor": "bm9wZQ=="},
     {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, {"colour": "red"}],
)  # fmt: skip
def test_bad_history_parameters_are_400(pipeline: LocalPipeline, params: dict[str, str]) -> None:
    response = requests.get(f"{pipeline.api_url}/currency/HKD/history", params=params, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in {"invalid_parameter", "unknown_parameter"}


BAD_CURSORS = {
    "nested_json": base64.urlsafe_b64encode(b"[" * 5000).decode(),
    "version_above_long": encode_cursor([MAX_VERSION, "id"]),
    "lone_surrogate": encode_cursor([1, "\ud800"]),
    "not_utf8": base64.urlsafe_b64encode(b'[1, "\xff"]').decode(),
}


@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
def test_bad_cursor_is_400_not_500(pipeline: LocalPipeline, cursor: str) -> None:
    response = requests.get(f"{pipeline.api_url}/currency/HKD/history", params={"cursor": cursor}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_parameter"


@pytest.mark.parametrize(
    "path", ["/currency/HKD/history?cursor=%FF%FE", "/currency/HKD/history?from=%FF", "/currency/HKD?at=%C0%80"]
)
def test_percent_encoded_non_utf8_parameters_are_400(pipeline: LocalPipeline, path: str) -> None:
    response = requests.get(f"{pipeline.api_url}{path}", timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_parameter"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/currency/HKD/history", {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59.999999Z"}),
        ("/currency/HKD/history", {"cursor": encode_cursor([MAX_VERSION - 1, "\uffff" * 100])}),
        ("/currency/HKD", {"at": "0001-01-01T00:00:00Z"}),
        ("/currency/HKD", {"at": "9999-12-31T23:59:59.999999Z"}),
    ],
)
def test_extreme_valid_parameters_reach_the_engine(pipeline: LocalPipeline, path: str, params: dict[str, str]) -> None:
    """What the parsers accept, the engine must accept too: the answer is a page or a 404, never a 500."""
    response = requests.get(f"{pipeline.api_url}{path}", params=params, timeout=10)
    assert response.status_code in (200, 404), response.text


def test_bad_moment_is_400(pipeline: LocalPipeline) -> None:
    response = requests.get(f"{pipeline.api_url}/currency/HKD", params={"at": "noon"}, timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_parameter"


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_unreachable_engine_is_a_clear_503(engine: str) -> None:
    """A real client against a closed port: what the API says when the engine is down."""
    dead = connect(SearchSettings(engine=engine, url=f"http://127.0.0.1:{free_port()}"))  # type: ignore[arg-type]
    request = Request({"multiValueQueryStringParameters": None, "headers": {}, "pathParameters": {},
                       "requestContext": {"httpMethod": "GET", "resourcePath": "/currency/{symbol}/history"},
                       "body": None, "stageVariables": None, "isBase64Encoded": False})  # fmt: skip
    response = handlers.history(request, lambda: HistoryReader(dead, "currency-events"), "EUR")
    assert response.status_code == 503
    assert '"search_unavailable"' in response.body
