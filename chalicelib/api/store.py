"""The `currency` DynamoDB table: the source of truth every other part is derived from.

Every write is one conditional write of the symbol's item that bumps its atomic
`revision`, so every change of one symbol is totally ordered downstream without a
clock (see `chalicelib.ordering`). A delete leaves a tombstone (`deleted: true`, no
rate) rather than removing the item, so the counter survives it and a re-create
continues above the delete, however writers interleave.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from chalicelib.api.currency import CurrencyRate
from chalicelib.observability import metrics
from chalicelib.ordering import TOMBSTONE

log = logging.getLogger(__name__)

_LIVE = f"attribute_exists(symbol) AND attribute_not_exists({TOMBSTONE})"
# Where `ADD revision :one` keeps counting: another writer may have left a revision or
# created_at that is not a number, which no write of the API could continue from.
_COUNTING = (
    "(attribute_not_exists(revision) OR attribute_type(revision, :number)) "
    "AND (attribute_not_exists(created_at) OR attribute_type(created_at, :number))"
)
_CORRUPT_COUNTER = (
    "attribute_exists(symbol) AND (NOT attribute_type(revision, :number) OR NOT attribute_type(created_at, :number))"
)


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


@dataclass(frozen=True)
class UnreadableItem:
    """What `delete` removed when another writer had left the item without a readable rate."""

    symbol: str


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RateStore:
    """Reads and writes rates; `table` is a boto3 DynamoDB Table resource.

    `clock` stamps `updated_at`, and `created_at` only when the item is absent from
    the table; versions never depend on it otherwise.
    """

    def __init__(self, table: Any, clock: Callable[[], int] = now_ms) -> None:
        self._table = table
        self._clock = clock
        self._conditional_failure = table.meta.client.exceptions.ConditionalCheckFailedException

    def put(self, change: CurrencyRate) -> tuple[StoredRate, bool]:
        """Create or update; returns the stored rate and whether it was created.

        The stream sees exactly one record for it. Update a live item, else revive a
        tombstone, else create the absent item, else restart the count of an item
        whose counter another writer broke; a concurrent writer that changes the item
        in between makes the loop go round once more. A single upserting UpdateItem
        would do in DynamoDB, but moto's stream then shows a key-only INSERT before
        the real one.
        """
        while True:
            updated = self._write_rate(change, f"{_LIVE} AND {_COUNTING}")
            if updated is not None:
                return updated, False
            revived = self._write_rate(change, f"attribute_exists({TOMBSTONE}) AND {_COUNTING}")
            if revived is not None:
                return revived, True
            now = self._clock()
            item = {"symbol": change.symbol, "rate": change.rate, "revision": 1, "created_at": now, "updated_at": now}
            try:
                self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(symbol)")
                return StoredRate.from_item(item), True
            except self._conditional_failure:
                pass
            restarted = self._update(
                change.symbol,
                f"SET rate = :rate, updated_at = :now, created_at = :now, revision = :one REMOVE {TOMBSTONE}",
                _CORRUPT_COUNTER,
                {":rate": change.rate, ":now": now, ":one": 1, ":number": "N"},
                "ALL_NEW",
            )
            if restarted is not None:  # no reader could see it: to them it was absent
                return StoredRate.from_item(restarted), True

    def delete(self, symbol: str) -> StoredRate | UnreadableItem | None:
        """Turn the item into a tombstone; returns what was removed, or None when there
        was nothing to delete (no item, or already a tombstone).

        An item another writer left unreadable is deleted too (logged and counted) and
        comes back as an `UnreadableItem`; if it had no counter to continue, the
        tombstone starts one, as a create of an absent item does.
        """
        now = self._clock()
        values = {":true": True, ":now": now, ":one": 1, ":number": "N"}
        old = self._update(
            symbol,
            f"SET {TOMBSTONE} = :true, updated_at = :now, created_at = if_not_exists(created_at, :now) "
            "REMOVE rate ADD revision :one",
            f"{_LIVE} AND {_COUNTING}",
            values,
            "ALL_OLD",
        ) or self._update(
            symbol,
            f"SET {TOMBSTONE} = :true, updated_at = :now, created_at = :now, revision = :one REMOVE rate",
            f"{_CORRUPT_COUNTER} AND attribute_not_exists({TOMBSTONE})",
            values,
            "ALL_OLD",
        )
        if old is None:
            return None
        return _readable(old) or UnreadableItem(symbol)

    def get(self, symbol: str) -> StoredRate | None:
        """The live rate, or None for no item, a tombstone, or an item no reader can use."""
        item = self._table.get_item(Key={"symbol": symbol}, ConsistentRead=True).get("Item")
        return _readable(item) if item and TOMBSTONE not in item else None

    def list(self) -> list[StoredRate]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = self._table.scan(**kwargs)
            items.extend(item for item in page.get("Items", []) if TOMBSTONE not in item)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(filter(None, map(_readable, items)), key=lambda r: r.symbol)

    def _write_rate(self, change: CurrencyRate, condition: str) -> StoredRate | None:
        """Set the rate on the item if `condition` holds; None if it does not."""
        now = self._clock()
        item = self._update(
            change.symbol,
            "SET rate = :rate, updated_at = :now, created_at = if_not_exists(created_at, :now) "
            f"REMOVE {TOMBSTONE} ADD revision :one",
            condition,
            {":rate": change.rate, ":now": now, ":one": 1, ":number": "N"},
            "ALL_NEW",
        )
        return StoredRate.from_item(item) if item is not None else None

    def _update(
        self, symbol: str, expression: str, condition: str, values: dict[str, Any], returned: str
    ) -> dict[str, Any] | None:
        """One conditional UpdateItem; the returned image, or None if the condition failed."""
        try:
            response = self._table.update_item(
                Key={"symbol": symbol},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues=returned,
            )
        except self._conditional_failure:
            return None
        attributes: dict[str, Any] = response["Attributes"]
        return attributes


def _readable(item: dict[str, Any]) -> StoredRate | None:
    """The item as a rate, or None (logged and counted) when another writer left it unreadable:
    one bad item must not break reads for everyone."""
    try:
        return StoredRate.from_item(item)
    except (KeyError, TypeError, ValueError, ArithmeticError) as error:
        log.warning("skipped an unreadable table item", extra={"symbol": item.get("symbol"), "error": repr(error)})
        metrics.STORE_UNREADABLE_ITEMS.inc()
        return None
