"""OpenSearch adapter (`opensearch-py`), including AWS SigV4 for Amazon OpenSearch Service.

The `elasticsearch` client refuses OpenSearch (no X-Elastic-Product header), hence
an adapter per engine; the bulk format and everything above it are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from opensearchpy import JSONSerializer, NotFoundError, OpenSearch, RequestError, TransportError, Urllib3AWSV4SignerAuth

from chalicelib.config import SearchSettings
from chalicelib.sinks.base import BULK_RESPONSE_FIELDS, EngineUnavailable
from chalicelib.sinks.credentials import CredentialsProvider, SearchCredentials, with_refresh


class OpenSearchEngine:
    name = "opensearch"

    def __init__(
        self, build: Callable[[SearchCredentials | None], OpenSearch], credentials: CredentialsProvider | None = None
    ) -> None:
        self._build = build
        self._credentials = credentials
        self._built_with: SearchCredentials | None = None
        # Credentials are read on the first request, not here; until then the client has none.
        self._client = build(None)

    @classmethod
    def connect(cls, search: SearchSettings, credentials: CredentialsProvider | None = None) -> OpenSearchEngine:
        options: dict[str, Any] = {"verify_certs": search.verify_certs}
        if search.ca_certs:
            options["ca_certs"] = search.ca_certs
        if search.auth == "sigv4":
            import boto3  # noqa: PLC0415 - the Lambda runtime provides it; only SigV4 needs it

            boto_credentials = boto3.Session().get_credentials()
            options["http_auth"] = Urllib3AWSV4SignerAuth(boto_credentials, search.region, search.sigv4_service)

        def build(basic: SearchCredentials | None) -> OpenSearch:
            auth = {} if basic is None else {"http_auth": basic.basic_auth()}
            # Retries are ours (sinks.bulk), bounded by the Lambda's remaining time.
            return OpenSearch(
                hosts=[search.url],
                max_retries=0,
                retry_on_timeout=False,
                serializer=OrjsonLoads(),
                **options,
                **auth,
            )

        return cls(build, credentials)

    def send_bulk(self, body: bytes, timeout_s: float) -> list[dict[str, Any]]:
        # `body` is pre-serialised NDJSON: opensearch-py sends bytes as they are.
        return self._call(
            lambda: self._client.bulk(body=body, filter_path=BULK_RESPONSE_FIELDS, request_timeout=timeout_s)
        )["items"]

    def index_template_meta(self, name: str, timeout_s: float) -> dict[str, Any] | None:
        try:
            found = self._call(lambda: self._client.indices.get_index_template(name=name, request_timeout=timeout_s))
        except NotFoundError:
            return None
        return found["index_templates"][0]["index_template"].get("_meta") or {}

    def put_index_template(self, name: str, body: dict[str, Any], timeout_s: float) -> None:
        self._call(lambda: self._client.indices.put_index_template(name=name, body=body, request_timeout=timeout_s))

    def index_exists(self, name: str, timeout_s: float) -> bool:
        return bool(self._call(lambda: self._client.indices.exists(index=name, request_timeout=timeout_s)))

    def create_index(self, name: str, timeout_s: float) -> None:
        try:
            self._call(lambda: self._client.indices.create(index=name, request_timeout=timeout_s))
        except RequestError as error:
            if error.error != "resource_already_exists_exception":
                raise

    def search(self, index: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return self._call(
            lambda: self._client.search(index=index, body=body, ignore_unavailable=True, request_timeout=timeout_s)
        )

    def refresh(self, index: str, timeout_s: float) -> None:
        self._call(
            lambda: self._client.indices.refresh(index=index, ignore_unavailable=True, request_timeout=timeout_s)
        )

    def aliases_of(self, name: str, timeout_s: float) -> list[str] | None:
        indices = self._client.indices
        if not self._call(lambda: indices.exists_alias(name=name, request_timeout=timeout_s)):
            return None
        return sorted(self._call(lambda: indices.get_alias(name=name, request_timeout=timeout_s)))

    def update_aliases(self, actions: list[dict[str, Any]], timeout_s: float) -> None:
        body = {"actions": actions}
        self._call(lambda: self._client.indices.update_aliases(body=body, request_timeout=timeout_s))

    def delete_index(self, name: str, timeout_s: float) -> None:
        self._call(lambda: self._client.indices.delete(index=name, request_timeout=timeout_s))

    def _call(self, request: Any) -> Any:
        """One request, retried once with re-read credentials if the engine refuses them."""
        return with_refresh(
            self._credentials, lambda credentials: self._once(request, credentials), _refused_status, "OpenSearch"
        )

    def _once(self, request: Any, credentials: SearchCredentials | None) -> Any:
        if credentials is not None and credentials is not self._built_with:
            # opensearch-py fixes auth per connection: new credentials, new client (the old one is dropped).
            self._client, self._built_with = self._build(credentials), credentials
        try:
            return request()
        except TransportError as error:
            status = error.status_code
            # Connection errors carry the status "N/A"; 429 and 5xx are worth a retry.
            if not isinstance(status, int) or status == 429 or status >= 500:
                raise EngineUnavailable(f"OpenSearch unavailable ({status}): {error.error}") from error
            raise


class OrjsonLoads(JSONSerializer):
    """opensearch-py's serializer, decoding responses with orjson (a bulk response is the
    consumer's biggest JSON); request bodies are still written by `json`, as before."""

    def loads(self, s: str) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return super().loads(s)  # what orjson refuses (NaN, a lone surrogate): `json`, errors as before


def _refused_status(error: Exception) -> int | None:
    status = error.status_code if isinstance(error, TransportError) else None
    return status if isinstance(status, int) else None
