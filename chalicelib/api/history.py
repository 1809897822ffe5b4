"""Rate history from the events index: a symbol's changes newest first, and the rate in force at a moment.

Query building and result shaping are pure; `HistoryReader` is the only part that
talks to the engine. "Newest" means highest `version` (chalicelib.ordering), which orders a
symbol's changes exactly, even where stream timestamps tie (one-second resolution).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chalicelib.api.currency import ClientError
from chalicelib.sinks.base import SearchEngine
from chalicelib.stream.changes import iso_utc

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
SEARCH_TIMEOUT_S = 5.0
# Versions are longs in the engines (chalicelib.ordering keeps them below 2**63).
MAX_VERSION = 2**63
_NEWEST_FIRST = [{"currency.version": "desc"}, {"event.id": "desc"}]


@dataclass(frozen=True)
class HistoryQuery:
    symbol: str
    start: datetime | None = None
    end: datetime | None = None
    size: int = DEFAULT_PAGE_SIZE
    after: list[Any] | None = None


def parse_history_params(symbol: str, params: dict[str, str]) -> HistoryQuery:
    unknown = sorted(set(params) - {"from", "to", "size", "cursor"})
    if unknown:
        raise ClientError("unknown_parameter", f"unknown query parameter(s) {unknown}; allowed: from, to, size, cursor")
    start = parse_moment(params["from"], "from") if "from" in params else None
    end = parse_moment(params["to"], "to") if "to" in params else None
    if start and end and start > end:
        raise ClientError("invalid_parameter", "'from' must not be after 'to'")
    size_text = params.get("size", str(DEFAULT_PAGE_SIZE))
    if not re.fullmatch(r"[0-9]{1,3}", size_text) or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
        raise ClientError("invalid_parameter", f"'size' must be an integer from 1 to {MAX_PAGE_SIZE}")
    after = decode_cursor(params["cursor"]) if "cursor" in params else None
    return HistoryQuery(symbol, start, end, int(size_text), after)


def parse_moment(text: str, name: str) -> datetime:
    """ISO 8601; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: e.g. year 1 with a positive offset
        raise ClientError(
            "invalid_parameter", f"'{name}' must be an ISO 8601 timestamp such as 2026-11-26T12:00:00Z"
        ) from None


def encode_cursor(sort_values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(sort_values).encode()).decode()


def decode_cursor(cursor: str) -> list[Any]:
    """The sort values of the last hit, [version, event id], checked so that the engine cannot refuse them.

    Anything else is a 400: a cursor is opaque, so a client can only have made it up.
    """
    try:
        values = json.loads(base64.b64decode(cursor, altchars=b"-_", validate=True))
    except (ValueError, RecursionError):  # ValueError: not base64 (binascii.Error), not UTF-8, not JSON, 4300+ digits
        values = None
    valid = (
        isinstance(values, list)
        and len(values) == len(_NEWEST_FIRST)
        and type(values[0]) is int
        and 0 <= values[0] < MAX_VERSION
        and isinstance(values[1], str)
        and _is_utf8(values[1])
    )
    if not valid:
        raise ClientError("invalid_parameter", "'cursor' is not one this API returned")
    return values


def _is_utf8(text: str) -> bool:
    """JSON escapes can spell lone surrogates, which no engine request can carry."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def history_search(query: HistoryQuery) -> dict[str, Any]:
    moment: dict[str, str] = {}
    if query.start:
        moment["gte"] = iso_utc(query.start)
    if query.end:
        moment["lte"] = iso_utc(query.end)
    filters: list[dict[str, Any]] = [{"term": {"currency.symbol": query.symbol}}]
    if moment:
        filters.append({"range": {"@timestamp": moment}})
    body: dict[str, Any] = {"query": {"bool": {"filter": filters}}, "sort": _NEWEST_FIRST, "size": query.size}
    if query.after:
        body["search_after"] = query.after
    return body


def rate_at_search(symbol: str, at: datetime) -> dict[str, Any]:
    filters = [{"term": {"currency.symbol": symbol}}, {"range": {"@timestamp": {"lte": iso_utc(at)}}}]
    return {"query": {"bool": {"filter": filters}}, "sort": _NEWEST_FIRST, "size": 1}


def history_page(symbol: str, response: dict[str, Any], size: int) -> dict[str, Any]:
    hits = response["hits"]["hits"]
    return {
        "symbol": symbol,
        "changes": [change_view(hit["_source"]) for hit in hits],
        "next_cursor": encode_cursor(hits[-1]["sort"]) if len(hits) == size else None,
    }


def rate_at(symbol: str, at: datetime, response: dict[str, Any]) -> dict[str, Any]:
    hits = response["hits"]["hits"]
    if not hits or hits[0]["_source"]["event"]["action"] == "remove":
        raise ClientError("not_found", f"no rate for {symbol} was in force at {iso_utc(at)}", status=404)
    view = change_view(hits[0]["_source"])
    return {"symbol": symbol, "rate": view["rate"], "at": iso_utc(at), "since": view["occurred_at"], "change": view}


def change_view(source: dict[str, Any]) -> dict[str, Any]:
    currency, event = source["currency"], source["event"]
    return {
        "id": event["id"],
        "type": event["action"].upper(),
        "rate": currency.get("rate"),
        "previous_rate": currency.get("previous_rate"),
        "version": currency["version"],
        "occurred_at": source["@timestamp"],
    }


class HistoryReader:
    def __init__(self, engine: SearchEngine, events_index: str) -> None:
        self._engine = engine
        self._events_index = events_index

    def history(self, query: HistoryQuery) -> dict[str, Any]:
        response = self._engine.search(self._events_index, history_search(query), SEARCH_TIMEOUT_S)
        return history_page(query.symbol, response, query.size)

    def rate_at(self, symbol: str, at: datetime) -> dict[str, Any]:
        response = self._engine.search(self._events_index, rate_at_search(symbol, at), SEARCH_TIMEOUT_S)
        return rate_at(symbol, at, response)
