"""Unit tests for bulk-item classification (sinks.base.outcome_of) and the Elasticsearch bulk format."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.consumer.documents import Action
from chalicelib.sinks.base import FAILED_OUTCOMES, ItemResult, outcome_of
from chalicelib.sinks.bulk import encode, parse_item

CREATE = Action("create", "events", "change-1", {"event": {"id": "change-1"}})
INDEX = Action("index", "rates", "EUR", {"currency": {"symbol": "EUR"}}, version=7)
UNVERSIONED_INDEX = Action("index", "rates", "EUR", {"currency": {"symbol": "EUR"}})


@pytest.mark.parametrize(
    ("action", "status", "outcome"),
    [
        (CREATE, 201, "written"),
        (INDEX, 200, "written"),
        (CREATE, 409, "duplicate"),  # the change was already indexed: redelivery
        (INDEX, 409, "stale"),  # a newer version is already there
        (UNVERSIONED_INDEX, 409, "rejected"),  # without a version a conflict is unexpected
        (INDEX, 404, "rejected"),
        (CREATE, 404, "rejected"),
        (CREATE, 429, "retryable"),
        (INDEX, 500, "retryable"),
        (CREATE, 400, "rejected"),
        (INDEX, 400, "rejected"),
        (INDEX, 413, "rejected"),
    ],
)
def test_outcome_table(action: Action, status: int, outcome: str) -> None:
    assert outcome_of(action, ItemResult(status)) == outcome


@given(st.sampled_from([CREATE, INDEX, UNVERSIONED_INDEX]), st.integers(100, 599))
def test_only_unexpected_errors_fail_the_message(action: Action, status: int) -> None:
    """Retry exactly what a retry can fix (429, 5xx); reject other errors; conflicts the design expects are fine."""
    outcome = outcome_of(action, ItemResult(status))
    if 200 <= status < 300:
        assert outcome == "written"
    elif status == 429 or status >= 500:
        assert outcome == "retryable"
    elif status == 409 and (action.operation == "create" or action.version is not None):
        assert outcome not in FAILED_OUTCOMES
    else:
        assert outcome == "rejected"


def ndjson(actions: list[Action]) -> list[dict[str, object]]:
    body = b"".join(encode(action) for action in actions)
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.splitlines()]


def test_operations_lines() -> None:
    """The bulk body: one meta line per action, then its document."""
    assert ndjson([CREATE, INDEX]) == [
        {"create": {"_index": "events", "_id": "change-1"}},
        {"event": {"id": "change-1"}},
        {"index": {"_index": "rates", "_id": "EUR", "version": 7, "version_type": "external"}},
        {"currency": {"symbol": "EUR"}},
    ]


def test_operations_keep_version_zero() -> None:
    """0 is a valid external version; a truthiness test would drop it."""
    meta, _ = ndjson([Action("index", "rates", "EUR", {}, version=0)])
    assert meta == {"index": {"_index": "rates", "_id": "EUR", "version": 0, "version_type": "external"}}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"create": {"_id": "a", "status": 201, "result": "created"}}, ItemResult(201)),
        ({"index": {"_id": "EUR", "status": 409, "result": "version_conflict"}}, ItemResult(409)),
        (
            {
                "index": {
                    "_id": "EUR",
                    "status": 409,
                    "error": {"type": "version_conflict_engine_exception", "reason": "current version [9] is higher"},
                }
            },
            ItemResult(409, "version_conflict_engine_exception", "current version [9] is higher"),
        ),
        (
            {"index": {"status": 400, "error": "mapper_parsing_exception"}},
            ItemResult(400, "error", "mapper_parsing_exception"),
        ),
    ],
)
def test_result_from_bulk_item(item: dict[str, object], expected: ItemResult) -> None:
    assert parse_item(item) == expected
