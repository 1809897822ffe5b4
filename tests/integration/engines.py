"""A real engine as the tests see it: the production sink plus a raw client to read back what it wrote."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.config import SearchSettings
from chalicelib.sinks.sink import SearchSink, connect


@dataclass
class EngineUnderTest:
    name: str
    url: str
    events_index: str = "currency-events"
    rates_index: str = "currency-rates"

    def __post_init__(self) -> None:
        self.sink = SearchSink(
            connect(SearchSettings(engine=self.name, url=self.url)),  # type: ignore[arg-type]
            self.events_index,
            self.rates_index,
        )
        self.sink.ensure_indices()
        if self.name == "opensearch":
            from opensearchpy import OpenSearch  # noqa: PLC0415

            self.client: Any = OpenSearch(hosts=[self.url], timeout=30)
        else:
            from elasticsearch import Elasticsearch  # noqa: PLC0415

            self.client = Elasticsearch(self.url, request_timeout=30)

    def _mget(self, index: str, ids: list[str]) -> list[dict[str, Any]]:
        # mget is real-time: no refresh needed to see the latest writes.
        if not ids:
            return []
        response = self.client.mget(index=index, body={"ids": ids})
        return [doc for doc in response["docs"] if doc.get("found")]

    def _listed(self, symbols: list[str]) -> list[dict[str, Any]]:
        """Current-state documents of these symbols that are not deletion markers."""
        return [doc for doc in self._mget(self.rates_index, symbols) if not doc["_source"]["currency"].get("deleted")]

    def current_rates(self, symbols: list[str]) -> dict[str, Decimal]:
        return {doc["_id"]: Decimal(doc["_source"]["currency"]["rate"]) for doc in self._listed(symbols)}

    def existing_event_ids(self, ids: list[str]) -> set[str]:
        return {doc["_id"] for doc in self._mget(self.events_index, ids)}

    def events_for(self, symbols: list[str]) -> list[dict[str, Any]]:
        """Event documents of these symbols, in stream order."""
        self.client.indices.refresh(index=self.events_index)
        body = {"query": {"terms": {"currency.symbol": symbols}}, "sort": [{"event.sequence": "asc"}], "size": 1000}
        return [hit["_source"] for hit in self.client.search(index=self.events_index, body=body)["hits"]["hits"]]

    def rates_for(self, symbols: list[str]) -> dict[str, str]:
        """Current-state documents of these symbols: symbol -> rate text."""
        return {doc["_id"]: doc["_source"]["currency"]["rate"] for doc in self._listed(symbols)}

    def listed_rates(self, index: str) -> dict[str, str]:
        """What a reader of the current-state index lists, as the dashboards query it: symbol -> rate text."""
        self.client.indices.refresh(index=index)
        body = {"query": {"bool": {"must_not": {"term": {"currency.deleted": True}}}}, "size": 1000}
        hits = self.client.search(index=index, body=body)["hits"]["hits"]
        return {hit["_id"]: hit["_source"]["currency"]["rate"] for hit in hits}

    def count_events_for(self, symbols: list[str]) -> int:
        self.client.indices.refresh(index=self.events_index)
        query = {"query": {"terms": {"currency.symbol": symbols}}}
        return self.client.count(index=self.events_index, body=query)["count"]
