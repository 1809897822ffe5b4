"""The `version` that totally orders all changes of one symbol (docs/design.md, "Ordering").

Stream sequence numbers exceed 64 bits and the stream timestamp has one-second
granularity, so neither can be an external version in the search engine. The API
keeps, on each item, an atomic `revision` counter and a `created_at` stamp in
milliseconds; a live version is `created_at * 10**6 + revision`:

- every API write of an item (create, update, delete, re-create) is one conditional
  write of that one item that adds 1 to `revision` and keeps `created_at`, so its
  version is above every earlier one: DynamoDB serialises the writes of one item,
  whatever the interleaving of writers and whatever their clocks;
- a delete does not remove the item: it leaves a tombstone (`deleted: true`, no
  rate) that keeps both attributes, so a re-create continues the count. The stream
  shows these as MODIFY records; `chalicelib.stream.changes` turns them into REMOVE and
  INSERT changes;
- `created_at` is read from the clock only when the item is absent from the table
  (its first create, or after a writer other than the API removed it). Only then
  does a version depend on a clock: the new lifetime beats the removed one if the
  clock moved forward by at least 1 ms and the removed lifetime had fewer than
  10**6 revisions;
- a REMOVE record (a delete made outside the API) has the removed image's version + 1;
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
# The attribute that marks an item as a tombstone: the symbol is deleted, its counter kept.
TOMBSTONE = "deleted"


def live_version(created_at_ms: int, revision: int) -> int:
    return created_at_ms * REVISIONS_PER_GENERATION + revision


def fallback_version(occurred_at_s: int, sequence: str) -> int:
    """Order by stream second, then by the low digits of the (per-shard increasing) sequence.

    Best effort: the low digits wrap, so two changes of one item within one stream
    second can be misordered when the sequence crosses a multiple of 10**8.
    """
    return occurred_at_s * FALLBACK_SEQUENCE_SPAN + int(sequence) % FALLBACK_SEQUENCE_SPAN


def is_tombstone(image: dict[str, Any] | None) -> bool:
    """Whatever its value, as the store's conditions (`attribute_exists`) see it."""
    return image is not None and TOMBSTONE in image


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
    old_image: dict[str, Any] | None,
    new_image: dict[str, Any] | None,
    occurred_at_s: int,
    sequence: str,
) -> int:
    """The version of one stream record: the image it wrote (a live item or a tombstone)
    carries its own; a removal (no new image) is one above the image it removed.

    A removal must always get through, so an image another writer left unreadable
    falls back instead of failing it; a written image that is unreadable raises.
    """
    if new_image is not None:
        version = image_version(new_image)
    else:
        try:
            previous = image_version(old_image)
        except (TypeError, ValueError, ArithmeticError):
            previous = None
        version = previous + 1 if previous is not None else None
    if version is None:
        version = fallback_version(occurred_at_s, sequence)
    return version
