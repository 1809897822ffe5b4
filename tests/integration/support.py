"""Waiting for the asynchronous pipeline, and writing to it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from chalicelib.api.currency import CurrencyRate
from chalicelib.api.store import RateStore

T = TypeVar("T")


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 15.0) -> T:
    """Call `probe` until `done(result)` or the timeout; returns the last result either way."""
    deadline = time.monotonic() + timeout_s
    result = probe()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.1)
        result = probe()
    return result


def random_write(store: RateStore, symbols: list[str], rng: random.Random, delete_share: float = 0.1) -> int:
    """One random create/update (a rate with 3 decimals) or delete; returns the stream records it made (0 or 1)."""
    symbol = rng.choice(symbols)
    if rng.random() < delete_share:
        return int(store.delete(symbol) is not None)  # deleting a missing symbol writes nothing
    store.put(CurrencyRate(symbol, Decimal(rng.randint(1, 10**6)).scaleb(-3)))
    return 1
