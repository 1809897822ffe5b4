"""OpenSearch adapter (`opensearch-py`), including AWS SigV4 for Amazon OpenSearch Service.

The `elasticsearch` client refuses OpenSearch (no X-Elastic-Product header), hence
an adapter per engine; the bulk format and everything above it are shared.
"""

from __future__ import annotations

from typing import Any

from opensearchpy import NotFoundError, OpenSearch, RequestError, TransportError, Urllib3AWSV4SignerAuth

from chalicelib.config import SearchSettings
from chalicelib.sinks.base import EngineUnavailable


class OpenSearchEngine:
    name = "opensearch"

    def __init__(self, client: OpenSearch) -> None:
        self._client = client

    @classmethod
    def connect(cls, search: SearchSettings) -> OpenSearchEngine:
        options: dict[str, Any] = {}
        if search.auth == "basic":
            options["http_auth"] = (search.username, search.password)
        elif search.auth == "sigv4":
            import boto3  # noqa: PLC0415 - the Lambda runtime provides it; only SigV4 needs it

            credentials = boto3.Session().get_credentials()
            options["http_auth"] = Urllib3AWSV4SignerAuth(credentials, search.region, search.sigv4_service)
        # Retries are ours (sinks.bulk), bounded by the Lambda's remaining time.
        return cls(OpenSearch(hosts=[search.url], max_retries=0, retry_on_timeout=False, **options))

    def send_bulk(self, body: bytes, timeout_s: float) -> list[dict[str, Any]]:
        return self._call(lambda: self._client.bulk(body=body, request_timeout=timeout_s))["items"]

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
        try:
            return request()
        except TransportError as error:
            status = error.status_code
            # Connection errors carry the status "N/A"; 429 and 5xx are worth a retry.
            if not isinstance(status, int) or status == 429 or status >= 500:
                raise EngineUnavailable(f"OpenSearch unavailable ({status}): {error.error}") from error
            raise
