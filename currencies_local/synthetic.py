"""Synthetic change streams for tests and benchmarks, made by the production conversion code.

`TableModel` does to an in-memory table what `RateStore` does to DynamoDB (revision
counter, `created_at` stamp, tombstones for deletes) and emits the stream records
DynamoDB would; the change messages are then made from those records by
`change_from_record`, as in Lambda.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from chalicelib.ordering import TOMBSTONE
from chalicelib.stream.changes import Change, change_from_record

_serializer = TypeSerializer()


@dataclass
class TableModel:
    now_ms: int = 1_800_000_000_000
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def put(self, symbol: str, rate: Decimal) -> None:
        self.now_ms += 1
        old = self.items.get(symbol)
        if old is None:
            new = {"symbol": symbol, "rate": rate, "revision": 1, "created_at": self.now_ms, "updated_at": self.now_ms}
        else:
            kept = {name: value for name, value in old.items() if name != TOMBSTONE}
            new = {**kept, "rate": rate, "revision": old["revision"] + 1, "updated_at": self.now_ms}
        self.items[symbol] = new
        self._emit("MODIFY" if old else "INSERT", old, new)

    def delete(self, symbol: str) -> None:
        self.now_ms += 1
        old = self.items.get(symbol)
        if old is not None and TOMBSTONE not in old:  # deleting a missing item emits nothing
            kept = {name: value for name, value in old.items() if name != "rate"}
            new = {**kept, TOMBSTONE: True, "revision": old["revision"] + 1, "updated_at": self.now_ms}
            self.items[symbol] = new
            self._emit("MODIFY", old, new)

    def live(self, symbol: str) -> bool:
        return symbol in self.items and TOMBSTONE not in self.items[symbol]

    def rates(self) -> dict[str, Decimal]:
        return {symbol: item["rate"] for symbol, item in self.items.items() if TOMBSTONE not in item}

    def changes(self, published_at: datetime | None = None) -> list[Change]:
        moment = published_at or datetime.now(UTC)
        return [change_from_record(record, moment) for record in self.records]

    def _emit(self, name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        stream: dict[str, Any] = {
            "ApproximateCreationDateTime": self.now_ms // 1000,
            "Keys": {"symbol": {"S": (new or old or {})["symbol"]}},
            "SequenceNumber": str(10**20 + len(self.records)),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if old is not None:
            stream["OldImage"] = {k: _serializer.serialize(v) for k, v in old.items()}
        if new is not None:
            stream["NewImage"] = {k: _serializer.serialize(v) for k, v in new.items()}
        self.records.append({"eventID": uuid.uuid4().hex, "eventName": name, "dynamodb": stream})


def random_table(changes: int, symbols: list[str], seed: int = 0, delete_share: float = 0.1) -> TableModel:
    """A table after exactly `changes` stream records of random writes and deletes."""
    rng = random.Random(seed)
    table = TableModel()
    while len(table.records) < changes:
        symbol = rng.choice(symbols)
        if table.live(symbol) and rng.random() < delete_share:
            table.delete(symbol)
        else:
            table.put(symbol, Decimal(rng.randint(1, 10**8)).scaleb(-4))
    return table
