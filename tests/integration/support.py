"""Helpers for integration tests: waiting for the asynchronous pipeline, reading the indices."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from elasticsearch import Elasticsearch

T = TypeVar("T")


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 15.0) -> T:
    """Call `probe` until `done(result)` or the timeout; returns the last result either way."""
    deadline = time.monotonic() + timeout_s
    result = probe()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.1)
        result = probe()
    return result


def events_for(search: Elasticsearch, symbols: list[str]) -> list[dict[str, Any]]:
    """Event documents of these symbols, in stream order."""
    search.indices.refresh(index="currency-events")
    response = search.search(
        index="currency-events",
        query={"terms": {"currency.symbol": symbols}},
        sort=[{"event.sequence": "asc"}],
        size=1000,
    )
    return [hit["_source"] for hit in response["hits"]["hits"]]


def rates_for(search: Elasticsearch, symbols: list[str]) -> dict[str, str]:
    """Current-state documents of these symbols: symbol -> rate."""
    search.indices.refresh(index="currency-rates")
    response = search.search(index="currency-rates", query={"terms": {"currency.symbol": symbols}}, size=1000)
    return {hit["_id"]: hit["_source"]["currency"]["rate"] for hit in response["hits"]["hits"]}
