"""`currencies verify`: do the search indices say what the table says?

The table is the truth. For every symbol the check compares the table's item with the
current-state (rates) index and with the newest event of the symbol in the events index:

- missing: the table has a live rate, the rates index has no document or a deletion marker;
- extra: the rates index shows a live document while the table has no live item;
- different_rate: the document's rate text is not the table's rate in canonical text. The
  pipeline writes exactly that text (`chalicelib.stream.changes` formats with `format_rate`) and
  term queries on `currency.rate.exact` depend on it, so "1.50" against 1.5 is a difference;
- older_version / newer_version: the document's external version (`_version`, what decides
  whether a later change may overwrite it) is below / above the item's
  (`chalicelib.ordering.image_version`); not checked for items written without a version;
- event_missing / event_differs: the newest event of the symbol (by `currency.version`) is
  absent, or does not agree (a live item: insert or modify with its rate and version; a
  tombstone: remove with its version);
- unreadable: an item written outside the API that no reader can use (as `RateStore` reads it).

Memory stays bounded by a page: the table is scanned page by page, and each page's
symbols are looked up in both indices with one search each; then the live documents of the
rates index are streamed in symbol order to find those without any table item. Only the
first `max_differences` differences are kept; every one is counted. A check while changes
flow can report a change in flight; run it again to tell a lag from a defect.

The dead-letter queue is reported (depth, and letters grouped by source and reason) but
does not count as a difference: a letter may hold a change that a later one superseded.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.api.currency import format_rate
from chalicelib.api.store import StoredRate
from chalicelib.batching import chunks
from chalicelib.consumer.documents import DELETED
from chalicelib.ordering import image_version, is_tombstone
from currencies_ops.console import Progress, Quiet
from currencies_ops.letters import HeldLetters, Letter, QueueUnreadable
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target

log = logging.getLogger(__name__)
T = TypeVar("T")

Kind = Literal[
    "missing",
    "extra",
    "different_rate",
    "older_version",
    "newer_version",
    "event_missing",
    "event_differs",
    "unreadable",
]
KINDS: tuple[Kind, ...] = get_args(Kind)
TABLE_PAGE = 500
"""Items per scan page; also the size of each page's two searches (below the engines' 10,000 result window)."""
INDEX_PAGE = 1000
BATCH_GET_KEYS = 100
"""DynamoDB's limit for one BatchGetItem."""
SEARCH_TIMEOUT_S = 30.0
PEEK_LIMIT = 1000
"""At most this many dead letters are read to group them; the depth is counted in full."""
PEEK_HIDE_S = 30
MAX_REASON_CHARS = 200


class CheckFailed(RuntimeError):
    """AWS or the engine could not be asked (unreachable, refused, timed out); the message says which call."""


@dataclass(frozen=True)
class Difference:
    kind: Kind
    symbol: str
    table: str
    """What the table says, as an operator reads it."""
    index: str
    """What the index says."""


# -- The pure comparison ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    state: Literal["live", "tombstone", "unreadable", "absent"]
    rate: str | None
    version: int | None
    text: str


@dataclass(frozen=True)
class _Indexed:
    live: bool
    rate: str | None
    version: int | None
    text: str


@dataclass(frozen=True)
class _Event:
    action: str | None
    rate: str | None
    version: int | None
    text: str


def compare(
    symbol: str, item: dict[str, Any] | None, rate_hit: dict[str, Any] | None, event_hit: dict[str, Any] | None
) -> list[Difference]:
    """The differences of one symbol: its table item (None: no item), its rates-index hit
    (with `_version`) and its newest events-index hit (None: none found)."""
    table = _read_item(item)
    indexed = _read_rate_hit(rate_hit)
    event = _read_event_hit(event_hit)
    index_text = indexed.text if indexed else "no document"
    if table.state == "unreadable":
        return [Difference("unreadable", symbol, table.text, index_text)]
    found: list[Difference] = []
    if table.state == "live":
        if indexed is None or not indexed.live:
            found.append(Difference("missing", symbol, table.text, index_text))
        else:
            if indexed.rate != table.rate:
                found.append(Difference("different_rate", symbol, table.text, index_text))
            if table.version is not None and indexed.version is not None and indexed.version != table.version:
                kind: Kind = "older_version" if indexed.version < table.version else "newer_version"
                found.append(Difference(kind, symbol, table.text, index_text))
    elif indexed is not None and indexed.live:
        found.append(Difference("extra", symbol, table.text, index_text))
    if table.state != "absent":
        found += _event_differences(symbol, table, event)
    return found


def _event_differences(symbol: str, table: _Item, event: _Event | None) -> list[Difference]:
    if event is None:
        return [Difference("event_missing", symbol, table.text, "no event")]
    if table.state == "live":
        agrees = event.action in ("insert", "modify") and event.rate == table.rate
    else:
        agrees = event.action == "remove"
    if table.version is not None and event.version != table.version:
        agrees = False
    return [] if agrees else [Difference("event_differs", symbol, table.text, event.text)]


def _read_item(item: dict[str, Any] | None) -> _Item:
    if item is None:
        return _Item("absent", None, None, "no item")
    if is_tombstone(item):
        version = _version_of(item)
        return _Item("tombstone", None, version, f"deleted{_at(version)}")
    try:
        rate = format_rate(StoredRate.from_item(item).rate)
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return _Item("unreadable", None, None, f"unreadable item {_short(item)}")
    version = _version_of(item)
    return _Item("live", rate, version, f"{rate}{_at(version)}")


def _version_of(item: dict[str, Any]) -> int | None:
    try:
        return image_version(item)
    except (TypeError, ValueError, ArithmeticError):  # a counter another writer broke
        return None


def _read_rate_hit(hit: dict[str, Any] | None) -> _Indexed | None:
    if hit is None:
        return None
    currency = (hit.get("_source") or {}).get("currency") or {}
    version = hit.get("_version")
    if currency.get(DELETED):
        return _Indexed(False, None, version, f"deletion marker{_at(version)}")
    rate = _text(currency.get("rate"))
    return _Indexed(True, rate, version, f"{rate or 'no rate'}{_at(version)}")


def _read_event_hit(hit: dict[str, Any] | None) -> _Event | None:
    if hit is None:
        return None
    source = hit.get("_source") or {}
    currency = source.get("currency") or {}
    action = (source.get("event") or {}).get("action")
    rate = _text(currency.get("rate"))
    version = currency.get("version")
    words = " ".join(word for word in ("newest event:", action or "?", rate) if word)
    return _Event(action, rate, version, f"{words}{_at(version)}")


def _text(value: Any) -> str | None:
    """A rate as the document holds it; a number (not written by the pipeline) as JSON writes it."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _at(version: int | None) -> str:
    return f" @ v{version}" if version is not None else " (no version)"


def _short(item: dict[str, Any]) -> str:
    text = json.dumps(item, default=str, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def letter_group(letter: Letter) -> tuple[str, str]:
    """(source, reason) of one dead letter, the reason cut to fit a table row."""
    return letter.source, letter.reason[:MAX_REASON_CHARS]


# -- The result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetters:
    queue_url: str
    depth: int
    """Approximate number of messages (visible and in flight), from GetQueueAttributes."""
    peeked: int
    groups: dict[tuple[str, str], int]
    """(source, reason) -> letters among those peeked."""

    @property
    def sample(self) -> bool:
        """Whether the groups count only part of the queue."""
        return self.peeked < self.depth


@dataclass
class Report:
    max_differences: int
    table_items: int = 0
    index_documents: int = 0
    """Live documents of the rates index read when looking for those without any table item."""
    counts: Counter[Kind] = field(default_factory=Counter)
    differences: list[Difference] = field(default_factory=list)
    dead_letters: DeadLetters | None = None

    def add(self, found: Sequence[Difference]) -> None:
        for difference in found:
            self.counts[difference.kind] += 1
            if len(self.differences) < self.max_differences:
                self.differences.append(difference)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return self.total == 0

    def to_json(self) -> dict[str, Any]:
        letters = self.dead_letters
        return {
            "clean": self.clean,
            "checked": {"table_items": self.table_items, "index_documents": self.index_documents},
            "differences": {
                "total": self.total,
                "by_kind": {kind: self.counts[kind] for kind in KINDS},
                "listed": [vars(difference) for difference in self.differences],
                "truncated": self.total > len(self.differences),
            },
            "dead_letters": None
            if letters is None
            else {
                "queue_url": letters.queue_url,
                "depth": letters.depth,
                "peeked": letters.peeked,
                "sample": letters.sample,
                "groups": [
                    {"source": source, "reason": reason, "count": count}
                    for (source, reason), count in sorted(letters.groups.items(), key=lambda group: -group[1])
                ],
            },
        }


# -- The I/O edges ------------------------------------------------------------------------------


def verify(
    target: Target,
    metrics: OperationMetrics,
    *,
    symbols: Sequence[str] = (),
    max_differences: int = 100,
    progress: Progress | None = None,
) -> Report:
    """Check the whole table and index (or only `symbols`), then look at the dead-letter queue."""
    progress = progress or Quiet()
    report = Report(max_differences)
    metrics.start_at_zero("scanned", "different")
    for index in (target.settings.rates_index, target.settings.events_index):
        _refresh(target, index)  # searches see the last refresh: without one, writes of the last second look missing
    if symbols:
        wanted = list(dict.fromkeys(symbols))
        progress.begin("symbols", len(wanted))
        for chunk in chunks(wanted, TABLE_PAGE):
            items = _batch_get(target, chunk, keys_only=False)
            _check_page(target, report, metrics, {symbol: items.get(symbol) for symbol in chunk})
            progress.advance(len(chunk))
    else:
        progress.begin("table items", item_count(target))
        for page in _scan(target):
            _check_page(target, report, metrics, {item["symbol"]: item for item in page})
            progress.advance(len(page))
        progress.begin("index documents", _live_document_count(target))
        for hits in _live_documents(target):
            report.index_documents += len(hits)
            present = _batch_get(target, [hit["_id"] for hit in hits], keys_only=True)
            strays = [
                difference
                for hit in hits
                if hit["_id"] not in present
                for difference in compare(hit["_id"], None, hit, None)
            ]
            report.add(strays)
            metrics.count("different", len(strays))
            progress.advance(len(hits))
    report.dead_letters = dead_letters(target)
    return report


def _check_page(
    target: Target, report: Report, metrics: OperationMetrics, items: dict[str, dict[str, Any] | None]
) -> None:
    symbols = list(items)
    rates = _rate_documents(target, symbols)
    events = newest_events(target, symbols)
    found = [
        difference
        for symbol in symbols
        for difference in compare(symbol, items[symbol], rates.get(symbol), events.get(symbol))
    ]
    report.table_items += sum(item is not None for item in items.values())
    report.add(found)
    metrics.count("scanned", len(symbols))
    metrics.count("different", len(found))


def _scan(target: Target) -> Iterator[list[dict[str, Any]]]:
    start: dict[str, Any] = {}
    while True:
        page = _aws(
            f"scan table {target.settings.table_name}",
            lambda start=start: target.table.scan(Limit=TABLE_PAGE, **start),
        )
        yield page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def item_count(target: Target) -> int | None:
    """DynamoDB's approximate item count (refreshed about every six hours), for the progress bar."""
    name = target.settings.table_name
    description = _aws(f"describe table {name}", lambda: target.table.meta.client.describe_table(TableName=name))
    return description["Table"].get("ItemCount")


def _batch_get(target: Target, symbols: Sequence[str], *, keys_only: bool) -> dict[str, dict[str, Any]]:
    """The items of these symbols that exist (tombstones included), strongly consistent."""
    name = target.settings.table_name
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(list(symbols), BATCH_GET_KEYS):
        request: dict[str, Any] = {"Keys": [{"symbol": symbol} for symbol in chunk], "ConsistentRead": True}
        if keys_only:
            request |= {"ProjectionExpression": "#s", "ExpressionAttributeNames": {"#s": "symbol"}}
        pending: dict[str, Any] = {name: request}
        for attempt in range(10):
            response = _aws(
                f"read table {name}", lambda pending=pending: target.dynamodb.batch_get_item(RequestItems=pending)
            )
            found |= {item["symbol"]: item for item in response["Responses"].get(name, [])}
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(min(0.05 * 2**attempt, 2.0))  # throttled: DynamoDB returned some keys unread
        else:
            raise CheckFailed(f"table {name} left keys unread after 10 attempts (throttled); try again later")
    return found


def _rate_documents(target: Target, symbols: list[str]) -> dict[str, dict[str, Any]]:
    body = {"query": {"ids": {"values": symbols}}, "size": len(symbols), "version": True, "_source": ["currency"]}
    return {hit["_id"]: hit for hit in _search(target, target.settings.rates_index, body)}


def newest_events(target: Target, symbols: list[str]) -> dict[str, dict[str, Any]]:
    """One search for the page: the highest-version event of each symbol (collapse keeps each group's top hit)."""
    body = {
        "query": {"bool": {"filter": [{"terms": {"currency.symbol": symbols}}]}},
        "collapse": {"field": "currency.symbol"},
        "sort": [{"currency.version": "desc"}],
        "size": len(symbols),
        "_source": ["currency", "event.action"],
    }
    return {hit["_source"]["currency"]["symbol"]: hit for hit in _search(target, target.settings.events_index, body)}


_LIVE_DOCUMENTS = {
    "bool": {
        "filter": [{"exists": {"field": "currency.symbol"}}],
        "must_not": [{"term": {f"currency.{DELETED}": True}}],
    }
}


def _live_document_count(target: Target) -> int:
    body = {"query": _LIVE_DOCUMENTS, "size": 0, "track_total_hits": True}
    response = _search_response(target, target.settings.rates_index, body)
    return int(response["hits"]["total"]["value"])


def _live_documents(target: Target) -> Iterator[list[dict[str, Any]]]:
    """The rates index's live documents in pages, in symbol order (`search_after`: no scroll context to clean up).

    Sorted by `currency.symbol`, which equals `_id` for every document the pipeline writes
    (Elasticsearch refuses to sort on `_id`); a hand-made document without it is not read.
    """
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "query": _LIVE_DOCUMENTS,
            "sort": [{"currency.symbol": "asc"}],
            "size": INDEX_PAGE,
            "version": True,
            "_source": ["currency"],
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        hits = _search(target, target.settings.rates_index, body)
        if hits:
            yield hits
        if len(hits) < INDEX_PAGE:
            return
        after = hits[-1]["sort"]


def dead_letters(target: Target, limit: int = PEEK_LIMIT) -> DeadLetters | None:
    """The DLQ's depth, and its letters grouped by (source, reason) from a peek at up to `limit` of them.

    Peeking hides the letters read for at most PEEK_HIDE_S (so each is read once) and shows
    them again right after; nothing is deleted. None when the deployment has no DLQ configured.
    """
    url = target.settings.dlq_url
    if not url:
        return None
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = _aws(
        "read the dead-letter queue's depth",
        lambda: target.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"],
    )
    visible = int(attributes["ApproximateNumberOfMessages"])
    depth = visible + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    held = HeldLetters(target.sqs, url, hide_s=PEEK_HIDE_S)
    try:
        letters, _ = held.receive(min(limit, visible), Quiet())
    except QueueUnreadable as error:
        raise CheckFailed(str(error)) from error
    finally:
        held.release()
    groups = Counter(letter_group(letter) for letter in letters)
    return DeadLetters(url, depth, len(letters), dict(groups))


def _aws(what: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except (BotoCoreError, ClientError) as error:
        raise CheckFailed(f"could not {what}: {error}") from error


def _refresh(target: Target, index: str) -> None:
    _engine(target, f"refresh {index}", lambda: target.search.refresh(index, SEARCH_TIMEOUT_S))


def _search(target: Target, index: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = _search_response(target, index, body)["hits"]["hits"]
    return hits


def _search_response(target: Target, index: str, body: dict[str, Any]) -> dict[str, Any]:
    return _engine(target, f"search {index}", lambda: target.search.search(index, body, SEARCH_TIMEOUT_S))


def _engine(target: Target, what: str, call: Callable[[], T]) -> T:
    search = target.settings.search
    try:
        return call()
    except Exception as error:  # unreachable, refused (401/403), or a query it does not take: all end the check
        raise CheckFailed(f"{search.engine} at {search.url} could not {what}: {error}") from error
