"""Change -> search-engine write actions (docs/design.md, "Search documents"). Pure: no client, no clock.

Two writes per change:
- the events index gets one document per change, `_id` = change id, op `create`,
  so a redelivered change is a harmless conflict (counted as a duplicate);
  the change id (the stream record's eventID) is `event.id` in both documents and
  `change_id` in every log line about the change (chalicelib.observability.logs);
- the rates index holds the current state, `_id` = symbol, written with external
  versioning from `Change.version`, so a stale or duplicated change can never
  overwrite a newer one. A REMOVE writes a deletion marker (`currency.deleted`)
  rather than deleting: the engine forgets a delete's version after
  `index.gc_deletes`, and a change redriven after that would bring the symbol back.
  Readers of the rates index filter the markers out.
Field names follow ECS so Kibana and Grafana work without tuning.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from chalicelib.stream.changes import Change

Operation = Literal["create", "index"]
# The field that marks a rates document as a deleted symbol (its version kept).
DELETED = "deleted"
SEQUENCE_DIGITS = 40


class Action(NamedTuple):
    """One bulk item; `version` set means external versioning.

    A named tuple, not a frozen dataclass: two are built per change on the consumer's
    hot path, and a tuple is built several times faster (immutable all the same).
    """

    operation: Operation
    index: str
    id: str
    document: dict[str, Any]
    version: int | None = None


def actions_for(change: Change, *, events_index: str, rates_index: str, ingested_at: str) -> list[Action]:
    return [
        Action("create", events_index, change.id, event_document(change, ingested_at)),
        rate_action(change, rates_index),
    ]


def event_document(change: Change, ingested_at: str) -> dict[str, Any]:
    previous = (change.old or {}).get("rate")
    currency: dict[str, Any] = {"symbol": change.symbol, "version": change.version}
    if change.type != "REMOVE":
        currency["rate"] = change.data["rate"]
    if previous is not None:
        currency["previous_rate"] = previous
    revision = (change.new or change.old or {}).get("revision")
    if revision is not None:
        currency["revision"] = revision
    return {
        "@timestamp": change.occurred_at,
        "event": {
            "id": change.id,
            "kind": "event",
            "dataset": "currencies.change",
            "action": change.type.lower(),
            "type": ["deletion" if change.type == "REMOVE" else "creation" if change.type == "INSERT" else "change"],
            "created": change.published_at,
            "ingested": ingested_at,
            # Zero-padded so that sorting the keyword sorts by stream order.
            "sequence": change.sequence.zfill(SEQUENCE_DIGITS),
        },
        "currency": currency,
    }


def rate_action(change: Change, rates_index: str) -> Action:
    currency: dict[str, Any] = {"symbol": change.symbol, "version": change.version}
    if change.type == "REMOVE":
        currency[DELETED] = True
    else:
        currency["rate"] = change.data["rate"]
        currency["updated_at"] = (change.new or {}).get("updated_at")
    document = {"@timestamp": change.occurred_at, "event": {"id": change.id}, "currency": currency}
    return Action("index", rates_index, change.symbol, document, version=change.version)
