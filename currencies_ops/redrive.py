"""`currencies redrive`: read the dead-letter queue, and send chosen letters back where they belong.

A letter (`chalicelib.deadletter`) says which stage gave up on its payload:
- source "stream": the payload is the DynamoDB stream record; it is converted again with
  `change_from_record` and the change published to the topic with `bus.publish`, as the
  stream handler would (the change's version comes from the record, so a stale redrive
  loses to any later change);
- source "consumer": the payload is the consumer's SQS body (an SNS envelope, or a raw
  change); the change inside (`bus.unwrap`) goes to the consumer's queue as a raw change.
A message without a letter's shape was moved by the queue's own redrive policy (an SNS
envelope or a raw change the consumer kept failing on): it goes back to the queue too.

Every letter read stays hidden from other readers while the run works (its visibility is
extended on long runs); a letter is deleted only after its own re-send succeeded, and every
letter not deleted is made visible again at the end. A failed delete leaves a re-sent letter
in the queue: seen again later, and harmless then, since the consumer is idempotent.

The parsing, choosing, planning and grouping are pure functions; SQS and SNS calls are at the edges.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batching import chunks, sized_batches
from chalicelib.deadletter import SQS_MAX_BYTES
from chalicelib.stream.bus import SNS_BATCH_LIMIT, publish, unwrap
from chalicelib.stream.changes import Change, InvalidChange, change_from_record
from currencies_ops.console import Progress, Quiet
from currencies_ops.letters import SQS_BATCH, UNKNOWN_REASON, HeldLetters, Letter, QueueUnreadable
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_LIMIT = 10_000

Destination = Literal["topic", "queue"]
Mode = Literal["show", "dry_run", "redrive"]


# -- The pure part: parse, choose, plan, group ---------------------------------------------------


def chosen(letter: Letter, source: str | None, reason: str | None) -> bool:
    """Whether the operator's filters pick the letter (`reason`: a case-insensitive substring)."""
    return (source is None or letter.source == source) and (
        reason is None or reason.casefold() in letter.reason.casefold()
    )


@dataclass(frozen=True)
class Plan:
    """Where a letter goes back to and what is sent, or why it cannot be re-sent (`problem`)."""

    destination: Destination | None
    change: Change | None = None
    body: str | None = None
    """The raw change text for the queue: the original, unwrapped from its SNS envelope."""
    problem: str | None = None


def plan(letter: Letter, published_at: datetime) -> Plan:
    """The re-send of one letter, checked as its stage will check it, so a letter that would only fail again stays."""
    if letter.source == "unknown":
        return Plan(None, problem=f"{UNKNOWN_REASON}: cannot tell where it belongs")
    if letter.payload is None:
        found = ", ".join(
            f"{name} {json.dumps(letter.identifiers[name])}"
            for name in ("keys", "sequence", "event_id", "event_name", "message_id", "size")
            if name in letter.identifiers
        )
        return Plan(
            None, problem=f"the letter has no payload (the original was too large to keep): {found or 'no ids'}"
        )
    if letter.source == "stream":
        try:
            record = json.loads(letter.payload)
            if not isinstance(record, dict):
                raise InvalidChange("the payload is not a stream record (a JSON object)")
            return Plan("topic", change=change_from_record(record, published_at))
        except (ValueError, RecursionError) as error:  # InvalidChange is a ValueError
            return Plan(None, problem=f"still not a publishable change: {error}")
    body = unwrap(letter.payload)
    try:
        return Plan("queue", change=Change.from_json(body), body=body)
    except (InvalidChange, RecursionError) as error:
        return Plan(None, problem=f"the consumer would refuse it again: {error}")


@dataclass
class Entry:
    """One letter read, and what this run made of it."""

    letter: Letter
    chosen: bool
    plan: Plan | None = None
    resent: bool = False
    failure: str | None = None
    """Why a chosen letter was not (in a dry run: would not be) re-sent."""
    delete_error: str | None = None
    """A re-sent letter that stayed in the queue: it will be seen again (harmless: the consumer is idempotent)."""


@dataclass(frozen=True)
class Row:
    source: str
    reason: str
    where: str
    """Where the group's letters go: "topic", "queue", "stays" (cannot be re-sent), "not chosen", or ""."""
    letters: int
    resent: int
    example: str


def where(entry: Entry, mode: Mode) -> str:
    if mode == "show":
        return ""
    if not entry.chosen:
        return "not chosen"
    if entry.failure is not None or entry.plan is None or entry.plan.destination is None:
        return "stays"
    return entry.plan.destination


def rows(entries: Sequence[Entry], mode: Mode) -> list[Row]:
    """Letters grouped by (source, reason, where), largest groups first, each with an example letter."""
    counts: Counter[tuple[str, str, str]] = Counter()
    resent: Counter[tuple[str, str, str]] = Counter()
    examples: dict[tuple[str, str, str], str] = {}
    for entry in entries:
        key = (*entry.letter.group, where(entry, mode))
        counts[key] += 1
        resent[key] += entry.resent
        examples.setdefault(key, entry.letter.example)
    ordered = sorted(counts, key=lambda key: (-counts[key], key))
    return [Row(*key, counts[key], resent[key], examples[key]) for key in ordered]


@dataclass
class Report:
    mode: Mode
    queue_url: str
    entries: list[Entry] = field(default_factory=list)
    limit_reached: bool = False
    """The run read --limit letters: the queue may hold more."""
    topic_arn: str | None = None
    consumer_queue_url: str | None = None

    @property
    def chosen(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.chosen]

    @property
    def resent(self) -> int:
        return sum(entry.resent for entry in self.entries)

    @property
    def not_resent(self) -> list[Entry]:
        return [entry for entry in self.chosen if entry.failure is not None]

    @property
    def complete(self) -> bool:
        """Every chosen letter was re-sent (a dry run: could be)."""
        return not self.not_resent

    def to_json(self) -> dict[str, Any]:
        def letter(entry: Entry) -> dict[str, Any]:
            return {
                "message_id": entry.letter.message_id,
                "source": entry.letter.source,
                "reason": entry.letter.reason,
                "example": entry.letter.example,
            }

        return {
            "mode": self.mode,
            "dead_letter_queue": self.queue_url,
            "read": len(self.entries),
            "limit_reached": self.limit_reached,
            "destinations": {"topic": self.topic_arn, "queue": self.consumer_queue_url},
            "groups": [vars(row) for row in rows(self.entries, self.mode)],
            "chosen": len(self.chosen),
            "resent": self.resent,
            "not_resent": [letter(entry) | {"problem": entry.failure} for entry in self.not_resent],
            "delete_failures": [
                letter(entry) | {"error": entry.delete_error} for entry in self.entries if entry.delete_error
            ],
        }


# -- The I/O edges ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    source: str | None = None
    reason: str | None = None
    everything: bool = False
    """--all: choose every letter (without a choice nothing is sent)."""
    dry_run: bool = False
    limit: int = DEFAULT_LIMIT

    @property
    def mode(self) -> Mode:
        if self.dry_run:
            return "dry_run"
        return "redrive" if self.everything or self.source or self.reason is not None else "show"


def redrive(
    target: Target,
    metrics: OperationMetrics,
    options: Options,
    *,
    progress: Progress | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Report:
    """Read the dead-letter queue; show it, plan the re-sends (dry run), or re-send the chosen letters.

    Raises QueueUnreadable when the queue is not configured or cannot be read (nothing was sent).
    """
    progress = progress or Quiet()
    url = target.settings.dlq_url
    if not url:
        raise QueueUnreadable("no dead-letter queue is configured (CURRENCIES_DLQ_URL)")
    metrics.start_at_zero("scanned", "written", "skipped", "failed")
    report = Report(options.mode, url)
    held = HeldLetters(target.sqs, url)
    try:
        progress.begin("reading the dead-letter queue", min(held.depth(), options.limit))
        letters, report.limit_reached = held.receive(options.limit, progress)
        metrics.count("scanned", len(letters))
        report.entries = [Entry(letter, report.mode != "show" and _chooses(options, letter)) for letter in letters]
        if report.mode == "show":
            return report
        published_at = clock()
        for entry in report.chosen:
            entry.plan = plan(entry.letter, published_at)
            entry.failure = entry.plan.problem
        _resolve_destinations(target, report)
        if report.mode == "redrive":
            progress.begin("re-sending", len(_pending(report, "queue")) + len(_pending(report, "topic")))
            _send_to_queue(target.sqs, held, report, progress)
            if _pending(report, "topic"):
                _publish_to_topic(target.sns, held, report, progress)
            metrics.count("skipped", len(report.entries) - len(report.chosen))
            metrics.count("written", report.resent)
            metrics.count("failed", len(report.not_resent))
        return report
    finally:
        held.release()


def _chooses(options: Options, letter: Letter) -> bool:
    return options.everything or chosen(letter, options.source, options.reason)


def _resolve_destinations(target: Target, report: Report) -> None:
    """The topic's ARN and the consumer queue's URL, for the letters that go there; a missing one fails them."""
    needed = {entry.plan.destination for entry in report.chosen if entry.plan and entry.failure is None}
    problems: dict[str, str] = {}
    if "topic" in needed:
        report.topic_arn = target.settings.topic_arn or None
        if report.topic_arn is None:
            problems["topic"] = "no topic is configured (CURRENCIES_TOPIC_ARN)"
    if "queue" in needed:
        name = target.settings.queue_name
        try:
            report.consumer_queue_url = target.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except (BotoCoreError, ClientError) as error:
            problems["queue"] = f"the consumer's queue {name!r} (CURRENCIES_QUEUE) could not be found: {error}"
    for entry in report.chosen:
        if entry.failure is None and entry.plan and entry.plan.destination in problems:
            entry.failure = problems[entry.plan.destination]


def _pending(report: Report, destination: Destination) -> list[Entry]:
    return [e for e in report.chosen if e.failure is None and e.plan and e.plan.destination == destination]


def _send_to_queue(sqs: Any, held: HeldLetters, report: Report, progress: Progress) -> None:
    """Raw changes to the consumer's queue in batches within SQS's limits; stops at a call that fails."""
    entries = _pending(report, "queue")
    url = report.consumer_queue_url or ""
    requests = [_queue_entry(str(n), entry.plan, url.endswith(".fifo")) for n, entry in enumerate(entries)]
    failing: str | None = None
    for batch in sized_batches([len(r["MessageBody"].encode()) for r in requests], SQS_BATCH, SQS_MAX_BYTES):
        group = [entries[n] for n in batch]
        if failing is not None:
            _fail(group, f"not sent: the consumer's queue was failing ({failing})")
            continue
        try:
            response = sqs.send_message_batch(QueueUrl=url, Entries=[requests[n] for n in batch])
        except (BotoCoreError, ClientError) as error:
            failing = repr(error)
            _fail(group, f"the consumer's queue refused the batch: {failing}")
            continue
        refused = {int(f["Id"]): f"{f.get('Code')}: {f.get('Message')}" for f in response.get("Failed") or []}
        for n, text in refused.items():
            entries[n].failure = f"the consumer's queue refused it: {text}"
        _sent(held, [entries[n] for n in batch if n not in refused])
        held.keep_hidden()
        progress.advance(len(group))


def _queue_entry(entry_id: str, plan: Plan | None, fifo: bool) -> dict[str, Any]:
    request: dict[str, Any] = {"Id": entry_id, "MessageBody": plan.body if plan and plan.body else ""}
    if fifo and plan and plan.change:
        request |= {"MessageGroupId": plan.change.symbol, "MessageDeduplicationId": plan.change.id}
    return request


def _publish_to_topic(sns: Any, held: HeldLetters, report: Report, progress: Progress) -> None:
    """Changes to the topic with `bus.publish` (sizes, retries, refusals), a batch at a time; stops once SNS fails."""
    failing = False
    for group in chunks(_pending(report, "topic"), SNS_BATCH_LIMIT):
        if failing:
            _fail(group, "not sent: the topic was failing (an earlier batch stayed unpublished after retries)")
            continue
        changes = [entry.plan.change for entry in group if entry.plan and entry.plan.change]
        publication = publish(sns, report.topic_arn or "", changes)
        for position, reason in publication.refused.items():
            group[position].failure = reason
        for position in publication.unpublished:
            group[position].failure = "SNS did not take it after retries (the log says why)"
        failing = bool(publication.unpublished)
        _sent(held, [group[position] for position in publication.published])
        held.keep_hidden()
        progress.advance(len(group))


def _sent(held: HeldLetters, entries: list[Entry]) -> None:
    """Mark re-sent letters, and only then delete them from the dead-letter queue."""
    for entry in entries:
        entry.resent = True
    errors = held.delete([entry.letter.message_id for entry in entries])
    for entry in entries:
        entry.delete_error = errors.get(entry.letter.message_id)


def _fail(entries: list[Entry], reason: str) -> None:
    for entry in entries:
        entry.failure = reason
