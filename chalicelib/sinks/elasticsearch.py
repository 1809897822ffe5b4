"""Elasticsearch sink: one `_bulk` request per batch, one result per action.

The Python client must have the server's major version (a 9.x client sends
`compatible-with=9`, which an 8.x server rejects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elasticsearch import BadRequestError, Elasticsearch

from chalicelib.documents import Action
from chalicelib.indices import templates
from chalicelib.sinks.base import ItemResult


class ElasticsearchSink:
    engine = "elasticsearch"

    def __init__(self, client: Elasticsearch, events_index: str, rates_index: str) -> None:
        self._client = client
        self._events_index = events_index
        self._rates_index = rates_index

    @classmethod
    def from_url(cls, url: str, events_index: str, rates_index: str, timeout_s: float = 10.0) -> ElasticsearchSink:
        client = Elasticsearch(url, request_timeout=timeout_s, retry_on_timeout=False, max_retries=0)
        return cls(client, events_index, rates_index)

    def ensure_indices(self) -> None:
        # Template PUTs are idempotent and "already exists" is success, so
        # concurrent cold starts are safe.
        for name, body in templates(self._events_index, self._rates_index).items():
            self._client.indices.put_index_template(name=name, **body)
        for index in (self._events_index, self._rates_index):
            try:
                self._client.indices.create(index=index)
            except BadRequestError as error:
                if error.error != "resource_already_exists_exception":
                    raise

    def write(self, actions: Sequence[Action]) -> list[ItemResult]:
        if not actions:
            return []
        response = self._client.bulk(operations=_operations(actions))
        return [_result(item) for item in response["items"]]


def _operations(actions: Sequence[Action]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for action in actions:
        meta: dict[str, Any] = {"_index": action.index, "_id": action.id}
        if action.version is not None:
            meta["version"] = action.version
            meta["version_type"] = "external"
        lines.append({action.operation: meta})
        if action.document is not None:
            lines.append(action.document)
    return lines


def _result(item: dict[str, Any]) -> ItemResult:
    (body,) = item.values()
    error = body.get("error")
    if isinstance(error, dict):
        return ItemResult(body["status"], error.get("type"), error.get("reason"))
    return ItemResult(body["status"], None if error is None else "error", None if error is None else str(error))
