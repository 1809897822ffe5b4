"""Waiting for the asynchronous pipeline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 15.0) -> T:
    """Call `probe` until `done(result)` or the timeout; returns the last result either way."""
    deadline = time.monotonic() + timeout_s
    result = probe()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(0.1)
        result = probe()
    return result
