"""Grouping items into requests bounded by count, and by bytes (bulk requests, SNS publish batches)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def batches(encoded: Sequence[bytes], max_items: int, max_bytes: int) -> list[list[int]]:
    """Indices of `encoded` grouped into requests within both bounds, in order (an oversized item goes alone)."""
    return sized_batches([len(lines) for lines in encoded], max_items, max_bytes)


def sized_batches(sizes: Sequence[int], max_items: int, max_bytes: int) -> list[list[int]]:
    """The same grouping from each item's size, for items whose counted size is more than their text."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for position, size in enumerate(sizes):
        if current and (len(current) >= max_items or total + size > max_bytes):
            groups.append(current)
            current, total = [], 0
        current.append(position)
        total += size
    if current:
        groups.append(current)
    return groups


def attributes_size(attributes: dict[str, dict[str, str]]) -> int:
    """Bytes that message attributes count toward an SNS or SQS message's size: name, type and value."""
    return sum(
        len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
        for name, value in attributes.items()
    )


def chunks(values: Sequence[T], size: int) -> Iterator[list[T]]:
    """`values` in consecutive groups of at most `size` (AWS batch calls take 10, 100 ...)."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])
