"""The sink the consumer writes to: index set-up plus bounded, retried bulk writes on any engine."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.config import SearchSettings
from chalicelib.documents import Action
from chalicelib.indices import templates
from chalicelib.sinks.base import ItemResult, SearchEngine
from chalicelib.sinks.bulk import BulkWriter


class SearchSink:
    def __init__(
        self, engine: SearchEngine, events_index: str, rates_index: str, writer: BulkWriter | None = None
    ) -> None:
        self.search_engine = engine
        self.engine = engine.name
        self._events_index = events_index
        self._rates_index = rates_index
        self._writer = writer or BulkWriter(engine)
        self._indices_ready = False

    def ensure_indices(self) -> None:
        # Template PUTs are idempotent and "already exists" is success, so concurrent
        # cold starts of many Lambdas are safe.
        for name, body in templates(self._events_index, self._rates_index).items():
            self.search_engine.put_index_template(name, body)
        for index in (self._events_index, self._rates_index):
            self.search_engine.create_index(index)
        self._indices_ready = True

    def write(self, actions: Sequence[Action], deadline: float | None = None) -> list[ItemResult]:
        """Bulk-write, first ensuring the indices once; failing that, every action is retryable."""
        if not self._indices_ready:
            try:
                self.ensure_indices()
            except Exception as error:  # unreachable, or refused (e.g. 403): the messages will be retried
                return [ItemResult(503, "indices_not_ready", repr(error))] * len(actions)
        return self._writer.write(actions, deadline)


def connect(search: SearchSettings) -> SearchEngine:
    """The adapter for the configured engine (imports only that engine's client)."""
    if search.engine == "opensearch":
        from chalicelib.sinks.opensearch import OpenSearchEngine  # noqa: PLC0415

        return OpenSearchEngine.connect(search)
    from chalicelib.sinks.elasticsearch import ElasticsearchEngine  # noqa: PLC0415

    return ElasticsearchEngine.connect(search)
