"""The sink the consumer writes to: index set-up plus bounded, retried bulk writes on any engine."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from chalicelib.config import SearchSettings
from chalicelib.consumer.documents import Action
from chalicelib.sinks.base import EngineUnavailable, ItemResult, SearchEngine
from chalicelib.sinks.bulk import BulkWriter
from chalicelib.sinks.credentials import CredentialsProvider, SecretReader
from chalicelib.sinks.credentials import read_secret as default_reader
from chalicelib.sinks.indices import templates

log = logging.getLogger(__name__)

SETUP_TIMEOUT_S = 10.0
"""The longest one set-up call may take; less when the invocation has less time left."""


class SearchSink:
    def __init__(
        self,
        engine: SearchEngine,
        events_index: str,
        rates_index: str,
        writer: BulkWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.search_engine = engine
        self.engine = engine.name
        self._events_index = events_index
        self._rates_index = rates_index
        self._writer = writer or BulkWriter(engine)
        self._clock = clock
        self._indices_ready = False

    def ensure_indices(self, deadline: float | None = None) -> None:
        """Templates and indices, each call bounded by `deadline` (time.monotonic).

        A template is PUT only when the engine's copy carries another digest: a PUT is a
        cluster-state update, and a fleet of cold starts must not send one each. PUTs are
        idempotent and "already exists" is success, so concurrent cold starts are safe.
        """
        engine = self.search_engine
        for name, body in templates(self._events_index, self._rates_index).items():
            meta = {"managed_by": "currencies", "digest": digest(body)}
            if engine.index_template_meta(name, self._timeout(deadline)) != meta:
                engine.put_index_template(name, {**body, "_meta": meta}, self._timeout(deadline))
        for index in (self._events_index, self._rates_index):
            if not engine.index_exists(index, self._timeout(deadline)):
                engine.create_index(index, self._timeout(deadline))
        self._indices_ready = True

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return SETUP_TIMEOUT_S
        left = deadline - self._clock()
        if left <= 0.1:
            raise EngineUnavailable("no time left in this invocation to set up the indices")
        return min(SETUP_TIMEOUT_S, left)

    def write(self, actions: Sequence[Action], deadline: float | None = None) -> list[ItemResult]:
        """Bulk-write, first ensuring the indices once; failing that, every action is retryable."""
        if not self._indices_ready:
            try:
                self.ensure_indices(deadline)
            except Exception as error:  # unreachable, or refused (e.g. 403): the messages will be retried
                return [ItemResult(503, "indices_not_ready", repr(error))] * len(actions)
        return self._writer.write(actions, deadline)


ADAPTERS: dict[str, tuple[str, str]] = {
    "elasticsearch": ("chalicelib.sinks.elasticsearch", "ElasticsearchEngine"),
    "opensearch": ("chalicelib.sinks.opensearch", "OpenSearchEngine"),
}
"""Each CURRENCIES_SEARCH_ENGINE's adapter (module, class). Only the configured one is imported, and
with it its engine's client: `currencies package` compiles bytecode for that one alone."""


def connect(search: SearchSettings, read_secret: SecretReader | None = None) -> SearchEngine:
    """The adapter for the configured engine (imports only that engine's client).

    With basic or api_key auth, the adapter gets a credentials provider that reads
    `search.secret_arn` on the first request (with `read_secret`, default: boto3 via
    AWS_ENDPOINT_URL) and again when the engine refuses them.
    """
    credentials = None
    if search.auth in ("basic", "api_key"):
        assert search.secret_arn is not None, "SearchSettings.from_env requires it"
        credentials = CredentialsProvider(search.secret_arn, search.auth, read_secret or default_reader)
    if not search.verify_certs and search.url.startswith("https:"):
        log.warning("TLS certificates of the search engine are not verified", extra={"search_url": search.url})
    module, adapter = ADAPTERS[search.engine]
    engine: SearchEngine = getattr(importlib.import_module(module), adapter).connect(search, credentials)
    return engine


def digest(body: dict[str, Any]) -> str:
    """A stable fingerprint of a template body, to tell whether the engine already has this version."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
