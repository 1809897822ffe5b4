"""Elasticsearch adapter (official client; its major version must match the server's).

A 9.x client sends `compatible-with=9`, which an 8.x server rejects, so
`requirements.txt` pins the client to the server line this project runs.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import ApiError, BadRequestError, Elasticsearch, NotFoundError, TransportError
from elasticsearch.serializer import OrjsonSerializer

from chalicelib.config import SearchSettings
from chalicelib.sinks.base import BULK_RESPONSE_FIELDS, EngineUnavailable
from chalicelib.sinks.credentials import CredentialsProvider, SearchCredentials, with_refresh

KEPT_CLIENTS = 8
"""Configured clients kept per set of credentials (one per distinct timeout)."""


class ElasticsearchEngine:
    name = "elasticsearch"

    def __init__(self, client: Elasticsearch, credentials: CredentialsProvider | None = None) -> None:
        self._client = client
        self._credentials = credentials
        self._options_for: SearchCredentials | None = None
        self._by_timeout: dict[float, Elasticsearch] = {}

    @classmethod
    def connect(cls, search: SearchSettings, credentials: CredentialsProvider | None = None) -> ElasticsearchEngine:
        """A client without credentials: each request carries the provider's current ones (see `_call`)."""
        tls: dict[str, Any] = {"verify_certs": search.verify_certs}
        if search.ca_certs:
            tls["ca_certs"] = search.ca_certs
        # Retries are ours (sinks.bulk), bounded by the Lambda's remaining time. Responses are
        # decoded with orjson (the client's own serializer for it; also for the compatibility
        # mimetype the server answers with): a bulk response is the consumer's biggest JSON.
        client = Elasticsearch(
            search.url,
            max_retries=0,
            retry_on_timeout=False,
            serializers={"application/json": OrjsonSerializer()},
            **tls,
        )
        return cls(client, credentials)

    def send_bulk(self, body: bytes, timeout_s: float) -> list[dict[str, Any]]:
        # `body` is pre-serialised NDJSON: the client sends bytes as they are.
        response = self._call(lambda client: client.bulk(operations=body, filter_path=BULK_RESPONSE_FIELDS), timeout_s)
        return response["items"]

    def index_template_meta(self, name: str, timeout_s: float) -> dict[str, Any] | None:
        try:
            found = self._call(lambda client: client.indices.get_index_template(name=name), timeout_s)
        except NotFoundError:
            return None
        return found["index_templates"][0]["index_template"].get("_meta") or {}

    def put_index_template(self, name: str, body: dict[str, Any], timeout_s: float) -> None:
        self._call(lambda client: client.indices.put_index_template(name=name, **body), timeout_s)

    def index_exists(self, name: str, timeout_s: float) -> bool:
        return bool(self._call(lambda client: client.indices.exists(index=name), timeout_s))

    def create_index(self, name: str, timeout_s: float) -> None:
        try:
            self._call(lambda client: client.indices.create(index=name), timeout_s)
        except BadRequestError as error:
            if error.error != "resource_already_exists_exception":
                raise

    def search(self, index: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return self._call(lambda client: client.search(index=index, ignore_unavailable=True, **body), timeout_s).body

    def refresh(self, index: str, timeout_s: float) -> None:
        self._call(lambda client: client.indices.refresh(index=index, ignore_unavailable=True), timeout_s)

    def aliases_of(self, name: str, timeout_s: float) -> list[str] | None:
        if not self._call(lambda client: client.indices.exists_alias(name=name), timeout_s):
            return None
        return sorted(self._call(lambda client: client.indices.get_alias(name=name), timeout_s).body)

    def update_aliases(self, actions: list[dict[str, Any]], timeout_s: float) -> None:
        self._call(lambda client: client.indices.update_aliases(actions=actions), timeout_s)

    def delete_index(self, name: str, timeout_s: float) -> None:
        self._call(lambda client: client.indices.delete(index=name), timeout_s)

    def _call(self, request: Any, timeout_s: float) -> Any:
        """One request, retried once with re-read credentials if the engine refuses them."""
        return with_refresh(
            self._credentials,
            lambda credentials: self._once(request, timeout_s, credentials),
            _refused_status,
            "Elasticsearch",
        )

    def _once(self, request: Any, timeout_s: float, credentials: SearchCredentials | None) -> Any:
        try:
            return request(self._client_for(credentials, timeout_s))
        except TransportError as error:  # connection refused, reset, timed out
            raise EngineUnavailable(f"Elasticsearch unreachable: {error}") from error
        except ApiError as error:
            if error.meta.status == 429 or error.meta.status >= 500:
                raise EngineUnavailable(f"Elasticsearch answered {error.meta.status}: {error.message}") from error
            raise

    def _client_for(self, credentials: SearchCredentials | None, timeout_s: float) -> Elasticsearch:
        """The client with these credentials and timeout, made once per pair.

        `options()` builds a whole new client (~250 µs, more than a 10-item bulk request's own
        Python), and nearly every call repeats a pair: the writer's timeout is its fixed request
        timeout until an invocation's last seconds, when deadline-bound one-off values are not kept.
        """
        if credentials is not self._options_for:  # first call, or re-read credentials: start over
            self._options_for, self._by_timeout = credentials, {}
        client = self._by_timeout.get(timeout_s)
        if client is None:
            options: dict[str, Any] = {"request_timeout": timeout_s}
            if credentials is not None and credentials.api_key is not None:
                options["api_key"] = credentials.api_key.reveal()
            elif credentials is not None:
                options["basic_auth"] = credentials.basic_auth()
            client = self._client.options(**options)
            if len(self._by_timeout) < KEPT_CLIENTS:
                self._by_timeout[timeout_s] = client
        return client


def _refused_status(error: Exception) -> int | None:
    return error.meta.status if isinstance(error, ApiError) else None
