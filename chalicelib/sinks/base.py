"""What every sink offers, and how one bulk item's result becomes an outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from chalicelib.documents import Action

Outcome = Literal["written", "duplicate", "stale", "absent", "retryable", "rejected"]
FAILED_OUTCOMES: frozenset[Outcome] = frozenset({"retryable", "rejected"})


@dataclass(frozen=True)
class ItemResult:
    """One bulk item's HTTP status and, on error, the engine's error type and reason."""

    status: int
    error_type: str | None = None
    reason: str | None = None


class Sink(Protocol):
    engine: str

    def ensure_indices(self) -> None:
        """Create or update the index templates and create the indices; safe to run concurrently."""

    def write(self, actions: Sequence[Action]) -> list[ItemResult]:
        """Send the actions in bulk; one result per action, in order."""


def outcome_of(action: Action, result: ItemResult) -> Outcome:
    """Classify a bulk item: conflicts the design expects are successes, not errors."""
    if 200 <= result.status < 300:
        return "written"
    if result.status == 409 and action.operation == "create":
        return "duplicate"
    if result.status == 409 and action.version is not None:
        return "stale"
    if result.status == 404 and action.operation == "delete":
        return "absent"
    if result.status == 429 or result.status >= 500:
        return "retryable"
    return "rejected"
