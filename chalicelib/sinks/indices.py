"""Index templates with explicit mappings for the events and rates indices.

`dynamic: strict` means a document with an unexpected field is rejected rather than
mapped by guess (the classic failure: one field mapped as long, later as float).
Rates are `double` for range queries and aggregations, with a `.exact` keyword
sub-field (and `_source`) keeping the exact decimal text the change carried.
"""

from __future__ import annotations

from typing import Any

from chalicelib.consumer.documents import DELETED

_DATE = {"type": "date", "format": "strict_date_optional_time||epoch_millis"}
_KEYWORD = {"type": "keyword"}

# A double for ranges and aggregations, plus the exact decimal text (`.exact`) for term
# queries: documents carry rates as strings, which both fields index as given.
_RATE = {"type": "double", "fields": {"exact": {"type": "keyword"}}}

_CURRENCY = {
    "properties": {
        "symbol": _KEYWORD,
        "rate": _RATE,
        "previous_rate": _RATE,
        "version": {"type": "long"},
        "revision": {"type": "long"},
        "updated_at": _DATE,
    }
}
# A deleted symbol's document in the rates index (chalicelib.consumer.documents) keeps its version.
_RATES_CURRENCY = {"properties": {**_CURRENCY["properties"], DELETED: {"type": "boolean"}}}


def templates(events_index: str, rates_index: str) -> dict[str, dict[str, Any]]:
    """Template name -> body (`index_patterns`, `template`, `priority`)."""
    return {
        f"{events_index}-template": {
            "index_patterns": [f"{events_index}*"],
            "priority": 200,
            "template": {
                "mappings": {
                    "dynamic": "strict",
                    "properties": {
                        "@timestamp": _DATE,
                        "event": {
                            "properties": {
                                "id": _KEYWORD,
                                "kind": _KEYWORD,
                                "dataset": _KEYWORD,
                                "action": _KEYWORD,
                                "type": _KEYWORD,
                                "created": _DATE,
                                "ingested": _DATE,
                                "sequence": _KEYWORD,
                            }
                        },
                        "currency": _CURRENCY,
                    },
                },
            },
        },
        f"{rates_index}-template": {
            "index_patterns": [f"{rates_index}*"],
            "priority": 200,
            "template": {
                "mappings": {
                    "dynamic": "strict",
                    "properties": {
                        "@timestamp": _DATE,
                        "event": {"properties": {"id": _KEYWORD}},
                        "currency": _RATES_CURRENCY,
                    },
                },
            },
        },
    }
