"""`currencies backfill`: index what the table holds, for a table older than the pipeline or items
written outside the API, while live changes keep flowing.

Each item becomes the `Change` the stream handler would make of it (`change_from_record` on a
record shaped like the stream's): a live item as an INSERT of its current state, a tombstone as
a REMOVE; an item the API cannot read is skipped and counted, as the relay dead-letters it. The
documents are then the consumer's own (`chalicelib.consumer.documents`), written through the production
sink (bounded bulk requests, per-item outcomes, retries).

Versions: an item carrying `created_at` and `revision` gets its live version
(`ordering.image_version`), the very version the stream gives that state, so whichever of the
backfill and the live change lands second is a harmless conflict, and any later change beats
it. An item without them gets `ordering.fallback_version(scan second, 0)`: below every live
version, and below any later stream record of that item (a later second, or the same second
with a sequence above 0).

Events: `currencies verify` wants the newest event of each symbol to agree with the table, so
the backfill writes one event per item (action insert, or remove for a tombstone; `_id` made
from the symbol and version, so a second run is a duplicate, not a second event) unless the
events index already has one that covers it: an event of that version or newer, or, for an
item without a version, a newest event that already says the same. A live change that is
indexed after the backfill looked can still leave two events of one version; they agree.

Resumable: each segment's position (`LastEvaluatedKey`) is saved to a checkpoint file after its
page is indexed; a page with failed items is not checkpointed, so the next run redoes it. The
file is removed once every segment is done.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.consumer.documents import Action, actions_for, rate_action
from chalicelib.ordering import TOMBSTONE
from chalicelib.sinks.base import FAILED_OUTCOMES, outcome_of
from chalicelib.sinks.sink import SearchSink
from chalicelib.stream.changes import Change, InvalidChange, change_from_record, iso_utc
from currencies_ops.console import Progress, Quiet
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target
from currencies_ops.verify import item_count, newest_events

DEFAULT_SEGMENTS = 4
MAX_SEGMENTS = 64
SCAN_PAGE = 500
"""Items per scan page: one bulk request and one events search per page (below the 10,000 result window)."""
CHECKPOINT_DIR = Path.home() / ".cache" / "currencies"
MAX_LISTED = 20
"""Skipped and failed items listed in the report (all are counted)."""
_SCAN_SEQUENCE = "0"
_serializer = TypeSerializer()


class BackfillError(RuntimeError):
    """The backfill could not start or go on (checkpoint mismatch, AWS or the engine refused); says why."""


# -- The pure parts -----------------------------------------------------------------------------


def item_change(item: dict[str, Any], scanned_at: datetime) -> Change:
    """The change the stream handler would make of this item (as boto3's Table reads it) seen at `scanned_at`.

    Raises InvalidChange for an item the API cannot read, as the relay does for its record.
    """
    try:
        typed = {name: _serializer.serialize(value) for name, value in item.items()}
    except (TypeError, ValueError) as error:  # nothing a DynamoDB read returns, but not ours to crash on
        raise InvalidChange(f"item cannot be read: {error}") from None
    record = {
        "eventID": "backfill",
        "eventName": "MODIFY" if TOMBSTONE in item else "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": scanned_at.timestamp(),
            "SequenceNumber": _SCAN_SEQUENCE,
            "NewImage": typed,
        },
    }
    change = change_from_record(record, scanned_at)
    return change._replace(id=backfill_event_id(change.symbol, change.version))


def backfill_event_id(symbol: str, version: int) -> str:
    """Stable across runs (a rerun's event is a duplicate) and short whatever the symbol's length."""
    digest = hashlib.sha256(f"{symbol}\n{version}".encode()).hexdigest()[:32]
    return f"backfill-{digest}"


def carries_version(item: dict[str, Any]) -> bool:
    """Whether the item has the attributes of a live version (the API wrote it)."""
    return "created_at" in item and "revision" in item


def needs_event(change: Change, versioned: bool, newest: dict[str, Any] | None) -> bool:
    """Whether the symbol's newest event (an events-index hit, or None) leaves this state unrecorded."""
    if newest is None:
        return True
    source = newest.get("_source") or {}
    version = (source.get("currency") or {}).get("version")
    if not isinstance(version, int):
        return True
    if versioned:
        return version < change.version
    # A fallback version differs on every run: an event that already says the same will do.
    action = (source.get("event") or {}).get("action")
    if change.type == "REMOVE":
        return action != "remove"
    return action not in ("insert", "modify") or source["currency"].get("rate") != change.data["rate"]


def checkpoint_identity(target: Target) -> dict[str, str]:
    """What a checkpoint belongs to: resuming it against another table or index would skip items."""
    settings = target.settings
    return {
        "table": settings.table_name,
        "rates_index": settings.rates_index,
        "events_index": settings.events_index,
        "search_url": settings.search.url,
    }


def default_checkpoint_path(target: Target) -> Path:
    identity = checkpoint_identity(target)
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return CHECKPOINT_DIR / f"backfill-{identity['table']}-{digest}.json"


@dataclass
class Checkpoint:
    """Each segment's position: the key to scan after (None: from the start), or done."""

    path: Path
    identity: dict[str, str]
    segments: int
    after: dict[int, dict[str, Any] | None]
    done: set[int]
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def fresh(cls, path: Path, identity: dict[str, str], segments: int) -> Checkpoint:
        return cls(path, identity, segments, dict.fromkeys(range(segments)), set())

    @classmethod
    def load(cls, path: Path, identity: dict[str, str]) -> Checkpoint | None:
        """The saved checkpoint, None when there is none; BackfillError when it is another target's or unreadable."""
        try:
            saved = json.loads(path.read_text())
            segments = int(saved["segments"])
            after = {int(segment): position for segment, position in saved["after"].items()}
            done = {int(segment) for segment in saved["done"]}
            saved_identity = saved["identity"]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise BackfillError(f"checkpoint {path} is unreadable ({error!r}); start over with --restart") from None
        if saved_identity != identity:
            raise BackfillError(
                f"checkpoint {path} belongs to {saved_identity}, not {identity}; pass another --checkpoint or --restart"
            )
        if set(after) != set(range(segments)) or not done <= set(after):
            raise BackfillError(f"checkpoint {path} does not describe {segments} segments; start over with --restart")
        return cls(path, identity, segments, after, done)

    def advance(self, segment: int, last_key: dict[str, Any] | None) -> None:
        """Record that the segment's page up to `last_key` is indexed (None: the segment is done); saved at once."""
        with self._lock:
            if last_key is None:
                self.done.add(segment)
            self.after[segment] = last_key
            self._save()

    @property
    def complete(self) -> bool:
        return len(self.done) == self.segments

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _save(self) -> None:
        """Atomically (write, then rename): an interruption mid-write leaves the previous checkpoint."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "identity": self.identity,
            "segments": self.segments,
            "after": {str(segment): position for segment, position in sorted(self.after.items())},
            "done": sorted(self.done),
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(body, sort_keys=True))
        os.replace(temporary, self.path)


# -- The run ------------------------------------------------------------------------------------


@dataclass
class BackfillReport:
    segments: int
    resumed: bool
    checkpoint: Path
    scanned: int = 0
    written: int = 0
    """Items whose current-state document was written."""
    current: int = 0
    """Items whose current-state document already had this version or a newer one."""
    events_written: int = 0
    skipped: int = 0
    failed: int = 0
    pages: int = 0
    complete: bool = False
    interrupted: bool = False
    skipped_items: list[tuple[str, str]] = field(default_factory=list)
    """(symbol, why) of the first skipped items."""
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(symbol, engine error) of the first failed items, and segments that stopped."""

    def to_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "interrupted": self.interrupted,
            "resumed": self.resumed,
            "segments": self.segments,
            "checkpoint": str(self.checkpoint),
            "pages": self.pages,
            "items": {
                "scanned": self.scanned,
                "written": self.written,
                "current": self.current,
                "skipped": self.skipped,
                "failed": self.failed,
            },
            "events_written": self.events_written,
            "skipped": [{"symbol": symbol, "reason": reason} for symbol, reason in self.skipped_items],
            "failures": [{"symbol": symbol, "error": error} for symbol, error in self.failures],
        }


@dataclass
class _Run:
    """One backfill's shared state: the segment threads add their pages' counts under a lock."""

    target: Target
    sink: SearchSink
    checkpoint: Checkpoint
    report: BackfillReport
    metrics: OperationMetrics
    progress: Progress
    stop: threading.Event
    page_size: int
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def _client(self) -> Any:
        """The Table's client: thread-safe (the Table resource is not); it reads items as the Table does."""
        return self.target.table.meta.client

    def segment(self, segment: int) -> None:
        """Scan one segment page by page from its checkpoint; stops at a page with failed items."""
        after = self.checkpoint.after[segment]
        while not self.stop.is_set():
            scanned_at = datetime.now(UTC)
            request: dict[str, Any] = {
                "TableName": self.target.settings.table_name,
                "Segment": segment,
                "TotalSegments": self.checkpoint.segments,
                "Limit": self.page_size,
            }
            if after is not None:
                request["ExclusiveStartKey"] = after
            try:
                page = self._client.scan(**request)
            except (BotoCoreError, ClientError) as error:
                raise BackfillError(f"could not scan segment {segment} of the table: {error}") from error
            if not self._index_page(page.get("Items", []), scanned_at):
                self.note_failure(f"segment {segment}", "stopped at a page with failed items; run again to retry it")
                return
            after = page.get("LastEvaluatedKey")
            self.checkpoint.advance(segment, after)
            if after is None:
                return

    def _index_page(self, items: list[dict[str, Any]], scanned_at: datetime) -> bool:
        """Index one page; False when some item failed (the page is then not checkpointed)."""
        changes: list[tuple[Change, bool]] = []
        skipped: list[tuple[str, str]] = []
        for item in items:
            try:
                changes.append((item_change(item, scanned_at), carries_version(item)))
            except InvalidChange as error:
                skipped.append((str(item.get("symbol")), str(error)[:200]))
        newest = newest_events(self.target, [change.symbol for change, _ in changes]) if changes else {}
        ingested = iso_utc(datetime.now(UTC))
        settings = self.target.settings
        groups: list[list[Action]] = [
            actions_for(
                change, events_index=settings.events_index, rates_index=settings.rates_index, ingested_at=ingested
            )
            if needs_event(change, versioned, newest.get(change.symbol))
            else [rate_action(change, settings.rates_index)]
            for change, versioned in changes
        ]
        results = self.sink.write([action for group in groups for action in group])
        written = current = events = 0
        failures: list[tuple[str, str]] = []
        position = 0
        for (change, _), group in zip(changes, groups, strict=True):
            outcomes = [outcome_of(action, results[position + n]) for n, action in enumerate(group)]
            errors = [
                f"{action.index}: {results[position + n].status} {results[position + n].error_type}"
                for n, (action, outcome) in enumerate(zip(group, outcomes, strict=True))
                if outcome in FAILED_OUTCOMES
            ]
            position += len(group)
            if errors:
                failures.append((change.symbol, "; ".join(errors)))
                continue
            # The rates action comes last in actions_for's pair and alone otherwise.
            written += outcomes[-1] == "written"
            current += outcomes[-1] != "written"
            events += len(group) == 2 and outcomes[0] == "written"
        with self._lock:
            report = self.report
            report.pages += 1
            report.scanned += len(items)
            report.written += written
            report.current += current
            report.events_written += events
            report.skipped += len(skipped)
            report.failed += len(failures)
            report.skipped_items += skipped[: MAX_LISTED - len(report.skipped_items)]
            report.failures += failures[: MAX_LISTED - len(report.failures)]
            self.progress.advance(len(items))
        self.metrics.count("scanned", len(items))
        self.metrics.count("written", written + current)
        self.metrics.count("skipped", len(skipped))
        self.metrics.count("failed", len(failures))
        return not failures

    def note_failure(self, what: str, why: str) -> None:
        with self._lock:
            if len(self.report.failures) < MAX_LISTED:
                self.report.failures.append((what, why))


def backfill(
    target: Target,
    metrics: OperationMetrics,
    *,
    segments: int | None = None,
    restart: bool = False,
    checkpoint_path: Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    page_size: int = SCAN_PAGE,
) -> BackfillReport:
    """Scan the table in parallel segments and index every item; see the module docstring.

    `segments` None means the checkpoint's count when resuming, else DEFAULT_SEGMENTS.
    Setting `stop` (Ctrl-C does) lets each segment finish and checkpoint its page, then ends
    the run, resumable. Raises BackfillError when it cannot start; a segment that cannot go on
    (AWS or the engine unreachable) is reported in `failures` and resumes on the next run.
    """
    progress = progress or Quiet()
    stop = stop or threading.Event()
    identity = checkpoint_identity(target)
    path = checkpoint_path or default_checkpoint_path(target)
    if restart:
        path.unlink(missing_ok=True)
    saved = Checkpoint.load(path, identity)
    if saved is not None and segments is not None and segments != saved.segments:
        raise BackfillError(
            f"the checkpoint at {path} was made with {saved.segments} segments; "
            f"resume with --segments {saved.segments}, or start over with --restart"
        )
    checkpoint = saved or Checkpoint.fresh(path, identity, segments or DEFAULT_SEGMENTS)
    report = BackfillReport(checkpoint.segments, resumed=saved is not None, checkpoint=path)
    metrics.start_at_zero("scanned", "written", "skipped", "failed")
    sink = SearchSink(target.search, target.settings.events_index, target.settings.rates_index)
    try:
        sink.ensure_indices()
        progress.begin("table items", item_count(target))
    except Exception as error:  # unreachable, refused, or no such table: nothing was done
        raise BackfillError(f"could not prepare the backfill: {error}") from error
    run = _Run(target, sink, checkpoint, report, metrics, progress, stop, page_size)
    pending = [segment for segment in range(checkpoint.segments) if segment not in checkpoint.done]
    _run_segments(run, pending, stop)
    report.interrupted = stop.is_set()
    report.complete = checkpoint.complete
    if report.complete:
        checkpoint.remove()
    return report


def _run_segments(run: _Run, pending: list[int], stop: threading.Event) -> None:
    """One thread per segment. Ctrl-C, or a segment that cannot go on, stops the others after their page."""
    if not pending:
        return
    with ThreadPoolExecutor(len(pending), thread_name_prefix="backfill-segment") as pool:
        futures = {pool.submit(run.segment, segment): segment for segment in pending}
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except KeyboardInterrupt:
            stop.set()
        if any(future.done() and future.exception() for future in futures):
            stop.set()
        wait(futures)
    for future, segment in futures.items():
        error = future.exception()
        if error is not None:
            run.note_failure(f"segment {segment}", f"stopped: {error}; run again to resume")
