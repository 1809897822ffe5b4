"""Grouping items into requests bounded by count and bytes (bulk requests, SNS publish batches)."""

from __future__ import annotations

from collections.abc import Sequence


def batches(encoded: Sequence[bytes], max_items: int, max_bytes: int) -> list[list[int]]:
    """Indices of `encoded` grouped into requests within both bounds, in order (an oversized item goes alone)."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for position, lines in enumerate(encoded):
        if current and (len(current) >= max_items or size + len(lines) > max_bytes):
            groups.append(current)
            current, size = [], 0
        current.append(position)
        size += len(lines)
    if current:
        groups.append(current)
    return groups
