"""The sink the consumer needs, the engine adapter behind it, and what a bulk item's result means."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from chalicelib.consumer.documents import Action

Outcome = Literal["written", "duplicate", "stale", "retryable", "rejected"]
FAILED_OUTCOMES: frozenset[Outcome] = frozenset({"retryable", "rejected"})
BULK_RESPONSE_FIELDS = "items.*.status,items.*.error.type,items.*.error.reason"
"""The `filter_path` of a bulk request: each item's status and error, nothing else. The full
answer (index, id, version, shards, seq_no... per item) is ~4x the bytes for the engine to
write and for the consumer to decode, and the consumer reads only these."""


@dataclass(frozen=True)
class ItemResult:
    """One bulk item's HTTP status and, on error, the engine's error type and reason."""

    status: int
    error_type: str | None = None
    reason: str | None = None


class Sink(Protocol):
    engine: str

    def ensure_indices(self, deadline: float | None = None) -> None:
        """Create or update the index templates and create the indices; safe to run concurrently."""

    def write(self, actions: Sequence[Action], deadline: float | None = None) -> list[ItemResult]:
        """Send the actions in bulk; one result per action, in order; give up retrying at `deadline`."""


class SearchEngine(Protocol):
    """One engine's client behind the few calls the pipeline makes (see sinks.elasticsearch/opensearch)."""

    name: str

    def send_bulk(self, body: bytes, timeout_s: float) -> list[dict[str, Any]]:
        """POST `_bulk`; the response's `items`. Raises EngineUnavailable when retrying may help."""

    def index_template_meta(self, name: str, timeout_s: float) -> dict[str, Any] | None:
        """The `_meta` of an index template (empty if it has none), or None when there is no such template."""

    def put_index_template(self, name: str, body: dict[str, Any], timeout_s: float) -> None: ...

    def index_exists(self, name: str, timeout_s: float) -> bool: ...

    def create_index(self, name: str, timeout_s: float) -> None:
        """Create the index; an index that already exists is success."""

    def search(self, index: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Run a search; raises EngineUnavailable when the engine cannot answer."""

    def refresh(self, index: str, timeout_s: float) -> None:
        """Make every write acknowledged so far visible to searches (they see the last refresh)."""

    def aliases_of(self, name: str, timeout_s: float) -> list[str] | None:
        """The indices the alias `name` points at, or None when no alias has that name."""

    def update_aliases(self, actions: list[dict[str, Any]], timeout_s: float) -> None:
        """Apply `_aliases` actions (add, remove, remove_index) in one atomic request."""

    def delete_index(self, name: str, timeout_s: float) -> None: ...


class EngineUnavailable(RuntimeError):
    """The engine gave no usable answer (connection, timeout, 429/5xx for the whole request)."""


def outcome_of(action: Action, result: ItemResult) -> Outcome:
    """Classify a bulk item: conflicts the design expects are successes, not errors."""
    if 200 <= result.status < 300:
        return "written"
    if result.status == 409 and action.operation == "create":
        return "duplicate"
    if result.status == 409 and action.version is not None:
        return "stale"
    if result.status == 429 or result.status >= 500:
        return "retryable"
    return "rejected"
