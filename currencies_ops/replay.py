"""`currencies replay`: rebuild the current-state (rates) index from the events index.

For each symbol its newest event (highest `currency.version`) becomes a `Change` again and
then the consumer's own rates action (`chalicelib.consumer.documents.rate_action`): a rate, or for a
remove the deletion marker. Writes use the change's external version, so the order of writes
does not matter for correctness: writing every event would converge on the same index, and
a live change newer than the replayed one always wins. Reading the events sorted by
(symbol, version descending) lets the replay write once per symbol instead of once per event.

The events are read page by page with `search_after` (bounded memory; no scroll or point in
time to open and clean up, and the same request on both engines). Without a point in time the
pages are not one snapshot; that is harmless here, since an event indexed during the replay
was written to the rates index by the consumer with its version already.

- In place (default): fills in missing documents and advances older ones. A document the
  events index cannot overwrite (a version at or above the newest event's, e.g. written by
  hand) or a stray one stays; `--into-new-index` replaces those too.
- `--into-new-index`: builds `<rates>-<UTC timestamp>` (the index template gives it the current
  mapping), refreshes it, then moves the name `<rates>` onto it in one `_aliases` request:
  `add` the alias to the new index and `remove_index` for the index it named until then. When
  `<rates>` is still a concrete index (before the first such replay), that request deletes it
  and creates the alias of the same name atomically, so readers never see the name missing
  or empty; the old index's documents were rebuilt from the events index. Changes the consumer
  wrote to the old index while the new one was being built are then written again (a
  catch-up over the events ingested since the replay began), now through the alias.
- `--from/--to` replays only the events with `@timestamp` in the window into the rates index
  (in place) and copies them (`create`, same ids and documents) into a fresh events index
  `<events>-<UTC timestamp>`, e.g. to rebuild history under a new mapping for inspection.

A replayed document's `currency.updated_at` is its event's `@timestamp` (the stream time of the
change): events do not carry the item's `updated_at`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from chalicelib.consumer.documents import Action, rate_action
from chalicelib.sinks.base import FAILED_OUTCOMES, SearchEngine, outcome_of
from chalicelib.sinks.sink import SearchSink
from chalicelib.stream.changes import SCHEMA, Change, InvalidChange, iso_utc
from currencies_ops.console import Progress, Quiet
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target

T = TypeVar("T")

EVENTS_PAGE = 1000
SEARCH_TIMEOUT_S = 30.0
ADMIN_TIMEOUT_S = 60.0
CATCH_UP_MARGIN = timedelta(minutes=5)
"""Catch-up reads events ingested this long before the replay began: the consumer's clock is not ours."""
SWAP_GRACE_S = 1.0
"""Wait after the swap for searches and bulk requests that resolved the alias just before it to finish."""
MAX_LISTED = 20
_EVENTS_ORDER = [{"currency.symbol": "asc"}, {"currency.version": "desc"}, {"event.id": "asc"}]


class ReplayError(RuntimeError):
    """The replay could not run or complete (the engine refused or is unreachable); says why."""


# -- The pure parts -----------------------------------------------------------------------------


def change_from_event(source: dict[str, Any]) -> Change:
    """The change an events-index document records, validated as a consumer validates a message.

    Raises InvalidChange for a document the pipeline did not write (no action, version or rate).
    """
    try:
        currency, event = source["currency"], source["event"]
        change_type = str(event["action"]).upper()
        symbol, occurred_at = currency["symbol"], source["@timestamp"]
        data = {"symbol": symbol}
        new = None
        if change_type != "REMOVE":
            data["rate"] = currency["rate"]
            new = {"symbol": symbol, "rate": currency["rate"], "updated_at": _epoch_ms(occurred_at)}
            if currency.get("revision") is not None:
                new["revision"] = currency["revision"]
        previous = currency.get("previous_rate")
        payload = {
            "schema": SCHEMA,
            "type": change_type,
            "data": data,
            "id": event["id"],
            "sequence": str(event.get("sequence") or "0").lstrip("0") or "0",
            "version": currency["version"],
            "occurred_at": occurred_at,
            "published_at": event.get("created") or occurred_at,
            "old": {"symbol": symbol, "rate": previous} if previous is not None else None,
            "new": new,
        }
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise InvalidChange(f"not an event of this pipeline: {error!r}") from None
    return Change.from_json(json.dumps(payload))


def _epoch_ms(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp() * 1000)


def newest_per_symbol(
    pages: Iterator[list[dict[str, Any]]],
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Each page of events (sorted by symbol, then version descending) with the symbols' newest events in it.

    A symbol's events may straddle pages: only its first hit, on the earlier page, is its newest.
    """
    last_symbol: object = object()
    for page in pages:
        newest = []
        for hit in page:
            symbol = ((hit.get("_source") or {}).get("currency") or {}).get("symbol")
            if symbol != last_symbol:
                newest.append(hit)
                last_symbol = symbol
        yield page, newest


def timestamped(name: str, now: datetime) -> str:
    """`<name>-<UTC timestamp>`; lower case, as index names must be, and matched by `<name>*` templates."""
    return f"{name}-{now.astimezone(UTC).strftime('%Y%m%dt%H%M%S%fz')}"


def swap_actions(alias: str, new_index: str, behind: list[str] | None) -> list[dict[str, Any]]:
    """One `_aliases` request that points `alias` at `new_index` alone.

    `behind`: the indices the alias names now, or None when `alias` is a concrete index, which
    must go in the same request (`remove_index`) since an alias cannot share an index's name.
    Indices an alias named are only unaliased here: they are deleted after a grace period, once
    searches already running on them have finished.
    """
    if behind is None:
        return [{"add": {"index": new_index, "alias": alias}}, {"remove_index": {"index": alias}}]
    return [
        {"add": {"index": new_index, "alias": alias}},
        *({"remove": {"index": index, "alias": alias}} for index in behind if index != new_index),
    ]


# -- The engine edges ---------------------------------------------------------------------------


class IndexAdmin:
    """The index administration replay needs, each call bounded and failing as a ReplayError."""

    def __init__(self, engine: SearchEngine) -> None:
        self._engine = engine

    def refresh(self, index: str) -> None:
        self._call(f"refresh {index}", lambda: self._engine.refresh(index, ADMIN_TIMEOUT_S))

    def behind(self, alias: str) -> list[str] | None:
        """The indices `alias` names, or None when no alias has that name (a concrete index or nothing)."""
        return self._call(f"look up alias {alias}", lambda: self._engine.aliases_of(alias, ADMIN_TIMEOUT_S))

    def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        self._call("move the alias", lambda: self._engine.update_aliases(actions, ADMIN_TIMEOUT_S))

    def delete(self, index: str) -> None:
        self._call(f"delete {index}", lambda: self._engine.delete_index(index, ADMIN_TIMEOUT_S))

    @staticmethod
    def _call(what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except Exception as error:
            raise ReplayError(f"could not {what}: {error}") from error


def event_pages(engine: SearchEngine, index: str, query: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The events matching `query`, by symbol then version descending, a page at a time (`search_after`)."""
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {"query": query, "sort": _EVENTS_ORDER, "size": EVENTS_PAGE, "track_total_hits": False}
        if after is not None:
            body["search_after"] = after
        hits = _search(engine, index, body)["hits"]["hits"]
        if hits:
            yield hits
        if len(hits) < EVENTS_PAGE:
            return
        after = hits[-1]["sort"]


def count_events(engine: SearchEngine, index: str, query: dict[str, Any]) -> int:
    body = {"query": query, "size": 0, "track_total_hits": True}
    return int(_search(engine, index, body)["hits"]["total"]["value"])


def _search(engine: SearchEngine, index: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return engine.search(index, body, SEARCH_TIMEOUT_S)
    except Exception as error:
        raise ReplayError(f"could not read {index}: {error}") from error


def events_query(
    start: datetime | None = None, end: datetime | None = None, ingested_since: datetime | None = None
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [{"exists": {"field": "currency.symbol"}}]
    window = {bound: iso_utc(moment) for bound, moment in (("gte", start), ("lte", end)) if moment is not None}
    if window:
        filters.append({"range": {"@timestamp": window}})
    if ingested_since is not None:
        filters.append({"range": {"event.ingested": {"gte": iso_utc(ingested_since)}}})
    return {"bool": {"filter": filters}}


# -- The run ------------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    rates_index: str
    """Where the rates were written (the new index with --into-new-index)."""
    events_read: int = 0
    symbols: int = 0
    written: int = 0
    current: int = 0
    """Symbols whose document already had the event's version or a newer one."""
    skipped: int = 0
    failed: int = 0
    copied: int = 0
    events_copy: str | None = None
    swapped: list[str] | None = None
    """With --into-new-index: what the alias replaced (deleted), once it points at the new index."""
    caught_up: int = 0
    """Symbols written again after the swap (changes the consumer made meanwhile)."""
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.failed == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "rates_index": self.rates_index,
            "events_read": self.events_read,
            "symbols": {
                "total": self.symbols,
                "written": self.written,
                "current": self.current,
                "skipped": self.skipped,
                "failed": self.failed,
            },
            "events_copy": None if self.events_copy is None else {"index": self.events_copy, "copied": self.copied},
            "alias_moved_from": self.swapped,
            "caught_up": self.caught_up,
            "problems": [{"id": what, "error": why} for what, why in self.problems],
        }


def replay(
    target: Target,
    metrics: OperationMetrics,
    *,
    into_new_index: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    grace_s: float = SWAP_GRACE_S,
) -> ReplayReport:
    """Replay the events index into the rates index; see the module docstring. Raises ReplayError."""
    windowed = start is not None or end is not None
    if into_new_index and windowed:
        raise ReplayError("--into-new-index rebuilds from every event: a window would leave the other symbols out")
    progress = progress or Quiet()
    settings, engine = target.settings, target.search
    sink = SearchSink(engine, settings.events_index, settings.rates_index)
    admin = IndexAdmin(engine)
    began = clock()
    metrics.start_at_zero("scanned", "written", "skipped", "failed")
    try:
        sink.ensure_indices()  # after a mapping change, the template the new indices get
        report = ReplayReport(timestamped(settings.rates_index, began) if into_new_index else settings.rates_index)
        if report.rates_index != settings.rates_index:
            engine.create_index(report.rates_index, ADMIN_TIMEOUT_S)
        if windowed:
            report.events_copy = timestamped(settings.events_index, began)
            engine.create_index(report.events_copy, ADMIN_TIMEOUT_S)
    except ReplayError:
        raise
    except Exception as error:
        raise ReplayError(f"could not prepare the indices: {error}") from error
    query = events_query(start, end)
    progress.begin("events", count_events(engine, settings.events_index, query))
    _replay_events(
        sink=sink,
        engine=engine,
        events_index=settings.events_index,
        query=query,
        report=report,
        metrics=metrics,
        progress=progress,
    )
    if into_new_index and report.complete:
        admin.refresh(report.rates_index)  # readers of the alias must find every document at once
        behind = admin.behind(settings.rates_index)
        admin.update_aliases(swap_actions(settings.rates_index, report.rates_index, behind))
        report.swapped = [settings.rates_index] if behind is None else behind
        time.sleep(grace_s)
        for index in behind or []:
            admin.delete(index)
        admin.refresh(settings.events_index)
        caught_up = ReplayReport(settings.rates_index)
        progress.begin("catch-up", None)
        since = events_query(ingested_since=began - CATCH_UP_MARGIN)
        _replay_events(
            sink=sink,
            engine=engine,
            events_index=settings.events_index,
            query=since,
            report=caught_up,
            metrics=metrics,
            progress=progress,
        )
        report.caught_up = caught_up.written
        report.failed += caught_up.failed
        report.problems += caught_up.problems[: MAX_LISTED - len(report.problems)]
    return report


def _replay_events(
    *,
    sink: SearchSink,
    engine: SearchEngine,
    events_index: str,
    query: dict[str, Any],
    report: ReplayReport,
    metrics: OperationMetrics,
    progress: Progress,
) -> None:
    """Write the newest event of each symbol matching `query` (and copy every event, for a window)."""
    for page, newest in newest_per_symbol(event_pages(engine, events_index, query)):
        copies = (
            [Action("create", report.events_copy, hit["_id"], hit["_source"]) for hit in page]
            if report.events_copy
            else []
        )
        changes: list[Change] = []
        for hit in newest:
            try:
                changes.append(change_from_event(hit.get("_source") or {}))
            except InvalidChange as error:
                report.skipped += 1
                _note(report, hit.get("_id", "?"), str(error))
        rates = [rate_action(change, report.rates_index) for change in changes]
        actions = [*copies, *rates]
        results = sink.write(actions)
        failed = 0
        for action, result in zip(actions, results, strict=True):
            outcome = outcome_of(action, result)
            if outcome in FAILED_OUTCOMES:
                failed += action in rates
                _note(report, f"{action.index}/{action.id}", f"{result.status} {result.error_type}: {result.reason}")
            elif action.index == report.events_copy:
                report.copied += outcome == "written"
            else:
                report.written += outcome == "written"
                report.current += outcome != "written"
        report.events_read += len(page)
        report.symbols += len(newest)
        report.failed += failed
        metrics.count("scanned", len(page))
        metrics.count("written", len(rates) - failed)
        metrics.count("skipped", len(newest) - len(changes))
        metrics.count("failed", failed)
        progress.advance(len(page))


def _note(report: ReplayReport, what: str, why: str) -> None:
    if len(report.problems) < MAX_LISTED:
        report.problems.append((what, why[:300]))
