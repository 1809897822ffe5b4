"""The `currency` DynamoDB table: the source of truth every other part is derived from.

Each write bumps an atomic per-item `revision` and keeps the `created_at` generation
stamp (ms) set when the item was created, so every change of one symbol can be totally ordered downstream
(see `chalicelib.ordering`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.currency import CurrencyRate
from chalicelib.observability import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredRate:
    symbol: str
    rate: Decimal
    revision: int
    created_at: int
    updated_at: int

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> StoredRate:
        return cls(
            symbol=item["symbol"],
            rate=Decimal(item["rate"]),
            revision=int(item.get("revision", 0)),
            created_at=int(item.get("created_at", 0)),
            updated_at=int(item.get("updated_at", 0)),
        )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RateStore:
    """Reads and writes rates; `table` is a boto3 DynamoDB Table resource."""

    def __init__(self, table: Any, clock: Callable[[], int] = now_ms) -> None:
        self._table = table
        self._clock = clock

    def put(self, change: CurrencyRate) -> tuple[StoredRate, bool]:
        """Create or update; returns the stored rate and whether it was created.

        The stream sees exactly one INSERT or MODIFY for it.

        Update-if-exists, else create-if-absent (a concurrent create makes the
        loop go round once more). A single upserting UpdateItem would do in
        DynamoDB, but moto's stream then shows a key-only INSERT before the real one.
        """
        while True:
            now = self._clock()
            try:
                response = self._table.update_item(
                    Key={"symbol": change.symbol},
                    # created_at is set here too for items written by other means
                    # (a backfill): from their first API write on they carry live versions.
                    UpdateExpression=(
                        "SET rate = :rate, updated_at = :now, created_at = if_not_exists(created_at, :now) "
                        "ADD revision :one"
                    ),
                    ConditionExpression="attribute_exists(symbol)",
                    ExpressionAttributeValues={":rate": change.rate, ":now": now, ":one": 1},
                    ReturnValues="ALL_NEW",
                )
                return StoredRate.from_item(response["Attributes"]), False
            except self._table.meta.client.exceptions.ConditionalCheckFailedException:
                pass
            item = {"symbol": change.symbol, "rate": change.rate, "revision": 1, "created_at": now, "updated_at": now}
            try:
                self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(symbol)")
                return StoredRate.from_item(item), True
            except self._table.meta.client.exceptions.ConditionalCheckFailedException:
                continue

    def delete(self, symbol: str) -> StoredRate | None:
        """Delete and return the removed rate, or None when there was nothing to delete."""
        response = self._table.delete_item(Key={"symbol": symbol}, ReturnValues="ALL_OLD")
        item = response.get("Attributes")
        return StoredRate.from_item(item) if item else None

    def get(self, symbol: str) -> StoredRate | None:
        item = self._table.get_item(Key={"symbol": symbol}, ConsistentRead=True).get("Item")
        return StoredRate.from_item(item) if item else None

    def list(self) -> list[StoredRate]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._table.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(filter(None, map(_readable, items)), key=lambda r: r.symbol)


def _readable(item: dict[str, Any]) -> StoredRate | None:
    """The item as a rate, or None (logged and counted) when another writer left it unreadable:
    one bad item must not break the listing for everyone."""
    try:
        return StoredRate.from_item(item)
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        log.warning("skipped an unreadable table item", extra={"symbol": item.get("symbol"), "error": repr(error)})
        metrics.STORE_UNREADABLE_ITEMS.inc()
        return None
