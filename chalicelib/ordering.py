"""The `version` that totally orders all changes of one symbol (docs/design.md, "Ordering").

Stream sequence numbers exceed 64 bits and the stream timestamp has one-second
granularity, so neither can be an external version in the search engine. The API
writes a per-item `revision` (atomic counter) and a `created_at` generation stamp
in milliseconds; a live version is `created_at * 10**6 + revision`:

- later writes of one item have a larger revision, so a larger version;
- a delete has the deleted image's version + 1, so it beats every write it saw;
- a re-created item starts a new generation with a later `created_at`, so it beats
  the delete (given a clock that moves forward by at least 1 ms between the delete
  and the re-create, and fewer than 10**6 writes per generation);
- items written without those attributes (an old table, a backfill) get a
  timestamp-derived fallback below 10**18, which every live version (above 10**18
  for any date after 2001) beats.
All versions stay below 2**63, the engines' limit for external versions.
"""

from __future__ import annotations

from typing import Any

REVISIONS_PER_GENERATION = 10**6
# Fallback versions keep this many low digits of the sequence: the most that keeps
# them below 10**18 (every live version is above) for stream times until 2286.
FALLBACK_SEQUENCE_SPAN = 10**8


def live_version(created_at_ms: int, revision: int) -> int:
    return created_at_ms * REVISIONS_PER_GENERATION + revision


def fallback_version(occurred_at_s: int, sequence: str) -> int:
    """Order by stream second, then by the low digits of the (per-shard increasing) sequence.

    Best effort: the low digits wrap, so two changes of one item within one stream
    second can be misordered when the sequence crosses a multiple of 10**8.
    """
    return occurred_at_s * FALLBACK_SEQUENCE_SPAN + int(sequence) % FALLBACK_SEQUENCE_SPAN


def image_version(image: dict[str, Any] | None) -> int | None:
    """The live version an item image carries, or None if it was written by other means."""
    if not image or image.get("created_at") is None or image.get("revision") is None:
        return None
    return live_version(int(image["created_at"]), int(image["revision"]))


def advances(old_image: dict[str, Any] | None, version: int) -> bool:
    """Whether a MODIFY's version is above the version of the image it replaced.

    False when a writer other than the API changed the item without bumping
    `revision` (or dropped it): the current-state index would then see the change
    as stale and keep the older rate.
    """
    previous = image_version(old_image)
    return previous is None or version > previous


def change_version(
    event_type: str,
    old_image: dict[str, Any] | None,
    new_image: dict[str, Any] | None,
    occurred_at_s: int,
    sequence: str,
) -> int:
    if event_type == "REMOVE":
        previous = image_version(old_image)
        version = previous + 1 if previous is not None else None
    else:
        version = image_version(new_image)
    if version is None:
        version = fallback_version(occurred_at_s, sequence)
    return version
