"""The consumer against what the engine can take: ours, the raw limit, `helpers.bulk`, and the per-event baseline.

On the same changes (SNS envelopes, as SQS delivers them), per engine and batch size:

- `ours`: the production `consume()` + `SearchSink`, batch by batch, as deployed;
- `limit_1` / `limit_2`: the very bulk bodies `consume()` would send (built by the production
  document builders), serialised to NDJSON before the clock starts and POSTed raw to `_bulk`
  with http.client, one request per batch, over one connection or two (two threads, each
  posting every other batch): what the engine takes when the client does no work;
- `helpers_bulk`: the client library's `helpers.bulk` of the same pre-built actions, for reference;
- `baseline`: one client `index()` call per change of its event document (the original
  example's way), on a subset of the changes.

Each run goes into fresh indices and must leave every event searchable. Runs are interleaved
(repetition -> batch size -> variants in a seeded shuffle) so drift hits every variant alike;
tables show medians with min-max. The CPU split (this process vs the engine's JVM, from /proc)
names what bounds each variant.

    python -m bench.consumer --engine both --json bench/results/consumer.json --write-docs
    BENCH_FULL=1 python -m bench.consumer ...     # the published run: 10,000 changes, 5 repetitions
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from bench.report import command_line, full_mode, machine, publish, spread
from chalicelib.config import SearchSettings
from chalicelib.consumer.documents import Action, actions_for
from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.sinks.sink import SearchSink, connect
from chalicelib.stream.changes import Change
from currencies_local.processes import ManagedProcess
from currencies_local.synthetic import random_table

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ENGINES = ("elasticsearch", "opensearch")
ENGINE_NAMES = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}
BATCH_SIZES = (10, 100, 1000)
VARIANTS = ("ours", "limit_1", "limit_2", "helpers_bulk")
BASELINE = "baseline"
BASELINE_BATCH = 1
LABELS = {
    "ours": "ours",
    "limit_1": "limit, 1 conn",
    "limit_2": "limit, 2 conn",
    "helpers_bulk": "helpers.bulk",
    BASELINE: "baseline (1 per request)",
}
DASH, TIMES = "\u2013", "\u00d7"  # en dash and multiplication sign, as the docs write ranges and factors
INGESTED_AT = "2027-01-01T00:00:00.000000Z"
"""The `event.ingested` stamp of the pre-built bodies (consume() stamps its own clock; same size)."""


@dataclass(frozen=True)
class Config:
    engines: tuple[str, ...]
    changes: int
    baseline_changes: int
    batch_sizes: tuple[int, ...]
    repetitions: int
    symbols: int = 200
    seed: int = 1
    url: str | None = None
    node_pid: int | None = None
    warmup: bool = True


@dataclass
class Run:
    """One timed pass of one variant over its changes into fresh indices."""

    engine: str
    variant: str
    batch_size: int
    repetition: int
    events: int
    seconds: float
    python_cpu_s: float
    engine_cpu_s: float | None
    indexed: int
    stale: int = 0
    """Rates items answered 409: an older version arriving after a newer one (expected with 2 connections)."""

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    def as_json(self) -> dict[str, Any]:
        engine_us = None if self.engine_cpu_s is None else round(self.engine_cpu_s / self.events * 1e6, 1)
        return {
            **asdict(self),
            "events_per_second": round(self.events_per_second, 1),
            "python_us_per_event": round(self.python_cpu_s / self.events * 1e6, 1),
            "engine_us_per_event": engine_us,
        }


# ---------------------------------------------------------------- pure parts (unit-tested)


def envelopes(changes: Sequence[Change]) -> list[str]:
    """SQS message bodies as an SNS subscription (raw delivery off) delivers them."""
    return [json.dumps({"Type": "Notification", "Message": change.to_json()}) for change in changes]


def action_lines(action: Action) -> bytes:
    """One bulk action as its two NDJSON lines (metadata, then the document), as the engines read them."""
    meta: dict[str, Any] = {"_index": action.index, "_id": action.id}
    if action.version is not None:
        meta["version"] = action.version
        meta["version_type"] = "external"
    head = json.dumps({action.operation: meta}, separators=(",", ":"))
    return (head + "\n" + json.dumps(action.document, separators=(",", ":")) + "\n").encode()


def ndjson_batches(per_change: Sequence[Sequence[Action]], batch_size: int) -> list[bytes]:
    """The bulk bodies of consecutive batches of `batch_size` changes (each change's actions kept together)."""
    return [
        b"".join(action_lines(action) for group in per_change[start : start + batch_size] for action in group)
        for start in range(0, len(per_change), batch_size)
    ]


def helper_actions(per_change: Sequence[Sequence[Action]]) -> list[dict[str, Any]]:
    """The same actions in the form `helpers.bulk` takes (metadata keys beside `_source`)."""
    out: list[dict[str, Any]] = []
    for group in per_change:
        for action in group:
            item: dict[str, Any] = {
                "_op_type": action.operation,
                "_index": action.index,
                "_id": action.id,
                "_source": action.document,
            }
            if action.version is not None:
                item["version"] = action.version
                item["version_type"] = "external"
            out.append(item)
    return out


def bulk_problems(response: bytes) -> Counter[str]:
    """What went wrong in a `_bulk` response: `stale` (external-version 409s, expected) or `status:type`.

    The `errors` flag comes first in both engines' answers, so a clean response is
    recognised without parsing its items.
    """
    if b'"errors":false' in response[:200]:
        return Counter()
    parsed = json.loads(response)
    if parsed.get("errors") is False:
        return Counter()
    problems: Counter[str] = Counter()
    for item in parsed["items"]:
        ((operation, result),) = item.items()
        error = result.get("error")
        if error is None:
            continue
        kind = error.get("type") if isinstance(error, dict) else str(error)
        if result["status"] == 409 and operation == "index" and kind == "version_conflict_engine_exception":
            problems["stale"] += 1
        else:
            problems[f"{result['status']}:{kind}"] += 1
    return problems


def schedule(repetitions: int, batch_sizes: Sequence[int], *, baseline: bool, seed: int) -> list[tuple[int, int, str]]:
    """(repetition, batch size, variant) in run order: interleaved, variants shuffled per repetition and batch."""
    rng = random.Random(seed)
    order: list[tuple[int, int, str]] = []
    for repetition in range(1, repetitions + 1):
        if baseline:
            order.append((repetition, BASELINE_BATCH, BASELINE))
        for size in batch_sizes:
            variants = list(VARIANTS)
            rng.shuffle(variants)
            order.extend((repetition, size, variant) for variant in variants)
    return order


def summarise(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and min-max per engine, variant and batch size, of rate and CPU costs."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["engine"], run["variant"], run["batch_size"]), []).append(run)
    summaries = []
    for (engine, variant, size), members in sorted(groups.items()):
        engine_us = [r["engine_us_per_event"] for r in members]
        summaries.append(
            {
                "engine": engine,
                "variant": variant,
                "batch_size": size,
                "events": members[0]["events"],
                "stale": spread([r["stale"] for r in members]),
                "events_per_second": spread([r["events_per_second"] for r in members]),
                "python_us_per_event": spread([r["python_us_per_event"] for r in members]),
                "engine_us_per_event": None if None in engine_us else spread(engine_us),
                "python_cpu_per_wall_s": spread([r["python_cpu_s"] / r["seconds"] for r in members]),
                "engine_cpu_per_wall_s": None
                if None in engine_us
                else spread([r["engine_cpu_s"] / r["seconds"] for r in members]),
            }
        )
    return summaries


def _median(summaries: Sequence[dict[str, Any]], engine: str, variant: str, size: int, key: str) -> float | None:
    for s in summaries:
        if (s["engine"], s["variant"], s["batch_size"]) == (engine, variant, size) and s[key] is not None:
            return s[key]["median"]
    return None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else round(numerator / denominator, 3)


def ratios(summaries: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per engine and batch size: ours / limit (1 and 2 connections) and ours / baseline, on median events/s."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for s in summaries:
        if s["variant"] != "ours":
            continue
        engine, size = s["engine"], s["batch_size"]
        ours = s["events_per_second"]["median"]
        rate = "events_per_second"
        out.setdefault(engine, {})[str(size)] = {
            "ours/limit_1": _ratio(ours, _median(summaries, engine, "limit_1", size, rate)),
            "ours/limit_2": _ratio(ours, _median(summaries, engine, "limit_2", size, rate)),
            "ours/baseline": _ratio(ours, _median(summaries, engine, BASELINE, BASELINE_BATCH, rate)),
        }
    return out


def bound_statement(summaries: Sequence[dict[str, Any]], engine: str, cores: int) -> str:
    """What bounds ours at each batch size, from its CPU split.

    The consumer sends a batch and waits for the answer before it builds the next, so its
    Python and the engine take turns: with cores to spare, their sum per event bounds it,
    and the larger part is the one to shrink (or to overlap with the other).
    """
    sizes = sorted({s["batch_size"] for s in summaries if s["engine"] == engine and s["variant"] == "ours"})
    parts = []
    for size in sizes:
        python = _median(summaries, engine, "ours", size, "python_us_per_event")
        engine_us = _median(summaries, engine, "ours", size, "engine_us_per_event")
        if python is None:
            continue
        if engine_us is None:
            parts.append(
                f"at batch {size}, Python CPU per event {python:,.0f} µs; engine CPU not measured (pid unknown)"
            )
            continue
        busy = (_median(summaries, engine, "ours", size, "python_cpu_per_wall_s") or 0) + (
            _median(summaries, engine, "ours", size, "engine_cpu_per_wall_s") or 0
        )
        larger = "our Python" if python > engine_us else "the engine"
        if busy >= 0.9 * cores:
            verdict = f"together {busy:.2f} of {cores} cores busy: the machine is saturated"
        else:
            verdict = f"taking turns ({busy:.2f} of {cores} cores busy), their sum bounds it; the larger is {larger}"
        parts.append(
            f"at batch {size}, {python:,.0f} µs of Python and {engine_us:,.0f} µs of engine CPU per event, {verdict}"
        )
    return "What bounds ours: " + ("; ".join(parts) if parts else "no runs") + "."


def _cell(value: dict[str, float] | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    text = f"{value['median']:,.{digits}f}"
    if value["runs"] > 1:
        text += f" ({value['min']:,.{digits}f}{DASH}{value['max']:,.{digits}f})"
    return text


def _times(value: float | None, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}{suffix}" if suffix else f"{value:.2f}"


def render_markdown(result: dict[str, Any]) -> str:
    """The `bench:consumer` section of docs/benchmarks.md, from a result as `run_benchmark` returns it."""
    summaries = result["summaries"]
    config = result["config"]
    m = result["machine"]
    packages = ", ".join(f"{name} {v}" for name, v in m["packages"].items() if v and name != "moto")
    engines = ", ".join(f"{ENGINE_NAMES[e]} {info['version']}" for e, info in result["engines"].items())
    lines = [
        f"Measured on {m['date']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}, "
        f"{packages}; {engines}. Mode `{result['mode']}`: {config['changes']:,} changes "
        f"({config['symbols']} currencies, two bulk items each), baseline on the first "
        f"{config['baseline_changes']:,}, {config['repetitions']} interleaved repetition(s); "
        f"medians, with min{DASH}max when repeated; events/s.",
        "",
        f"Reproduce: `{result['command']}`",
        "",
        "*ours*: the production `consume()` + `SearchSink`, one call per batch of SQS bodies (SNS envelopes); "
        "*limit*: the same bulk bodies, built by the production document builders and serialised before the "
        "clock starts, POSTed raw to `_bulk` (http.client; 2 conn = two threads posting alternate batches); "
        "*helpers.bulk*: the client's helper on the same pre-built actions, one request per batch; "
        "*baseline*: one `index()` request per change, of its event document only (the original example's way). "
        "Every run writes into fresh indices and checks that all events are searchable afterwards.",
    ]
    for engine, info in result["engines"].items():
        name = f"{ENGINE_NAMES[engine]} {info['version']}"
        sizes = sorted({s["batch_size"] for s in summaries if s["engine"] == engine and s["variant"] != BASELINE})
        baseline = next((s for s in summaries if s["engine"] == engine and s["variant"] == BASELINE), None)
        engine_ratios = result["ratios"].get(engine, {})
        lines += [
            "",
            f"### {name}",
            "",
            "| batch size | ours | limit 1 conn | limit 2 conn | helpers.bulk | baseline (1 per request) "
            "| ours/limit (1 conn / 2 conn) | ours/baseline |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size in sizes:
            cells = [
                _cell(next((s["events_per_second"] for s in summaries if (s["engine"], s["variant"], s["batch_size"])
                            == (engine, variant, size)), None))
                for variant in VARIANTS
            ]  # fmt: skip
            r = engine_ratios.get(str(size), {})
            lines.append(
                f"| {size:,} | {' | '.join(cells)} | {_cell(baseline['events_per_second']) if baseline else 'n/a'} "
                f"| {_times(r.get('ours/limit_1'))} / {_times(r.get('ours/limit_2'))} "
                f"| {_times(r.get('ours/baseline'), TIMES)} |"
            )
        lines += [
            "",
            f"CPU split on {name} (µs of CPU per event; CPU seconds per wall second, 1.00 = one core busy):",
            "",
            "| batch size | variant | events/s | Python µs/event | engine µs/event | Python CPU/s | engine CPU/s |",
            "|---:|---|---:|---:|---:|---:|---:|",
        ]
        order = {variant: i for i, variant in enumerate((*VARIANTS, BASELINE))}
        rows = sorted(
            (s for s in summaries if s["engine"] == engine), key=lambda s: (s["batch_size"], order[s["variant"]])
        )
        for s in rows:
            lines.append(
                f"| {s['batch_size']:,} | {LABELS[s['variant']]} | {_cell(s['events_per_second'])} "
                f"| {_cell(s['python_us_per_event'])} | {_cell(s['engine_us_per_event'])} "
                f"| {_cell(s['python_cpu_per_wall_s'], 2)} | {_cell(s['engine_cpu_per_wall_s'], 2)} |"
            )
        stale = [
            f"{s['stale']['median']:,.0f} at batch {s['batch_size']:,}"
            for s in summaries
            if s["engine"] == engine and s["variant"] == "limit_2" and s["stale"]["median"]
        ]
        if stale:
            lines += [
                "",
                f"With 2 connections batches land out of order, so some rates writes arrive after a newer version "
                f"and are answered 409 (stale, as with concurrent consumers): median {', '.join(stale)} "
                f"of {config['changes']:,}.",
            ]
        lines += ["", result["bounds"][engine]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- talking to the node


def tree_cpu_seconds(root_pid: int) -> float:
    """User + system CPU time of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, stack = 0.0, [root_pid]
    while stack:
        pid = stack.pop()
        total += times.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


class Http:
    """One keep-alive connection speaking plain HTTP to the node: no client library in the way."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        parts = urlsplit(url)
        self._connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s
        )

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type} if body is not None else {}
        self._connection.request(method, path, body=body, headers=headers)
        response = self._connection.getresponse()
        return response.status, response.read()

    def post_bulk(self, body: bytes) -> Counter[str]:
        status, answer = self.request("POST", "/_bulk", body, "application/x-ndjson")
        if status != 200:
            raise RuntimeError(f"_bulk answered {status}: {answer[:300]!r}")
        return bulk_problems(answer)

    def json(self, method: str, path: str) -> Any:
        status, answer = self.request(method, path)
        if status >= 300 and not (method == "DELETE" and status == 404):
            raise RuntimeError(f"{method} {path} answered {status}: {answer[:300]!r}")
        return json.loads(answer)

    def close(self) -> None:
        self._connection.close()


@dataclass
class Node:
    """The engine under test: its URL, and its process (when we started it) or pid (when told) for its CPU time."""

    engine: str
    url: str
    process: ManagedProcess | None = None
    pid: int | None = None
    version: str = "unknown"
    work_dir: Path | None = None

    def cpu_seconds(self) -> float | None:
        pid = self.process.pid if self.process else self.pid
        return None if pid is None else tree_cpu_seconds(pid)


@dataclass
class Workload:
    """Everything a run needs, built once per engine before any clock starts."""

    events_index: str
    rates_index: str
    bodies: list[str]
    per_change: list[list[Action]]
    symbols: int
    bulk_bodies: dict[int, list[bytes]] = field(default_factory=dict)


def build_workload(config: Config, tag: str) -> Workload:
    """The changes, their SQS bodies, and the production actions for them (index names fixed per session)."""
    table = random_table(config.changes, [f"S{n:04d}" for n in range(config.symbols)], seed=config.seed)
    changes = [Change.from_json(change.to_json()) for change in table.changes()]  # exactly what consume() parses
    events_index, rates_index = f"bench-{tag}-events", f"bench-{tag}-rates"
    per_change = [
        actions_for(change, events_index=events_index, rates_index=rates_index, ingested_at=INGESTED_AT)
        for change in changes
    ]
    workload = Workload(
        events_index, rates_index, envelopes(changes), per_change, symbols=len({c.symbol for c in changes})
    )
    for size in config.batch_sizes:
        workload.bulk_bodies[size] = ndjson_batches(per_change, size)
    return workload


def fresh_indices(node: Node, workload: Workload) -> SearchSink:
    """Delete the session's indices and create them again with the production templates."""
    admin = Http(node.url)
    try:
        for index in (workload.events_index, workload.rates_index):
            admin.json("DELETE", f"/{index}")
    finally:
        admin.close()
    sink = SearchSink(
        connect(SearchSettings(engine=node.engine, url=node.url)),  # type: ignore[arg-type]
        workload.events_index,
        workload.rates_index,
    )
    sink.ensure_indices()
    return sink


def counts(node: Node, workload: Workload) -> tuple[int, int]:
    """Documents in the events and rates indices once every acknowledged write is visible."""
    admin = Http(node.url)
    try:
        found = []
        for index in (workload.events_index, workload.rates_index):
            admin.json("POST", f"/{index}/_refresh")
            found.append(int(admin.json("GET", f"/{index}/_count")["count"]))
        return found[0], found[1]
    finally:
        admin.close()


def remove_session(node: Node, workload: Workload) -> None:
    """Leave a node given by URL as we found it: no indices, no templates."""
    admin = Http(node.url)
    try:
        for index in (workload.events_index, workload.rates_index):
            admin.json("DELETE", f"/{index}")
            admin.json("DELETE", f"/_index_template/{index}-template")
    finally:
        admin.close()


def _client(node: Node) -> Any:
    if node.engine == "opensearch":
        from opensearchpy import OpenSearch  # noqa: PLC0415

        return OpenSearch(hosts=[node.url], timeout=120)
    from elasticsearch import Elasticsearch  # noqa: PLC0415

    return Elasticsearch(node.url, request_timeout=120)


def _bulk_helper(engine: str) -> Callable[..., Any]:
    if engine == "opensearch":
        from opensearchpy.helpers import bulk  # noqa: PLC0415

        return bulk
    from elasticsearch.helpers import bulk  # noqa: PLC0415

    return bulk


# ---------------------------------------------------------------- the variants (timed loops)


def _timed(node: Node, body: Callable[[], int]) -> tuple[float, float, float | None, int]:
    """Seconds, our CPU seconds (all threads), the engine's CPU seconds, and what `body` returned."""
    engine_before = node.cpu_seconds()
    cpu_before, started = time.process_time(), time.perf_counter()
    returned = body()
    seconds = time.perf_counter() - started
    python_cpu = time.process_time() - cpu_before
    engine_after = node.cpu_seconds()
    engine_cpu = None if engine_before is None or engine_after is None else engine_after - engine_before
    return seconds, python_cpu, engine_cpu, returned


def run_ours(node: Node, workload: Workload, size: int) -> tuple[int, Callable[[], int]]:
    sink = fresh_indices(node, workload)  # also warms the sink's connection, as a warm Lambda container's is
    batches = [
        [InboundMessage(str(start + i), body) for i, body in enumerate(workload.bodies[start : start + size])]
        for start in range(0, len(workload.bodies), size)
    ]

    def go() -> int:
        stale = 0
        for batch in batches:
            report = consume(batch, sink, events_index=workload.events_index, rates_index=workload.rates_index)
            if report.failed_ids:
                raise RuntimeError(f"{len(report.failed_ids)} messages failed: {dict(report.outcomes)}")
            stale += report.outcomes.get("stale", 0)
        return stale

    return len(workload.bodies), go


def run_limit(node: Node, workload: Workload, size: int, connections: int) -> tuple[int, Callable[[], int]]:
    fresh_indices(node, workload)
    bodies = workload.bulk_bodies[size]
    posters = [Http(node.url) for _ in range(connections)]
    for poster in posters:  # connected before the clock starts
        poster.json("GET", "/_cluster/health")
    problems: list[Counter[str]] = [Counter() for _ in posters]
    failures: list[BaseException] = []

    def post(k: int) -> None:
        try:
            for body in bodies[k::connections]:
                problems[k] += posters[k].post_bulk(body)
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    def go() -> int:
        if connections == 1:
            post(0)
        else:
            threads = [threading.Thread(target=post, args=(k,)) for k in range(connections)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        for poster in posters:
            poster.close()
        if failures:
            raise failures[0]
        total = sum(problems, Counter())
        unexpected = {kind: n for kind, n in total.items() if kind != "stale"}
        if unexpected:
            raise RuntimeError(f"bulk items failed: {unexpected}")
        return total["stale"]

    return len(workload.bodies), go


def run_helpers_bulk(node: Node, workload: Workload, size: int) -> tuple[int, Callable[[], int]]:
    fresh_indices(node, workload)
    client, bulk = _client(node), _bulk_helper(node.engine)
    client.cluster.health()  # connected before the clock starts
    actions = helper_actions(workload.per_change)

    def go() -> int:
        _, errors = bulk(client, actions, chunk_size=2 * size, max_retries=0)  # raises on any item error
        client.close()
        return len(errors) if isinstance(errors, list) else 0

    return len(workload.bodies), go


def run_baseline(node: Node, workload: Workload, changes: int) -> tuple[int, Callable[[], int]]:
    fresh_indices(node, workload)
    client = _client(node)
    client.cluster.health()
    events = [(group[0].id, group[0].document) for group in workload.per_change[:changes]]
    argument = "body" if node.engine == "opensearch" else "document"

    def go() -> int:
        for event_id, document in events:
            client.index(index=workload.events_index, id=event_id, **{argument: document})
        client.close()
        return 0

    return len(events), go


def run_variant(node: Node, workload: Workload, config: Config, variant: str, size: int, *, repetition: int) -> Run:
    """Set up fresh indices, time one pass of `variant`, then check every event is searchable."""
    if variant == "ours":
        events, go = run_ours(node, workload, size)
    elif variant in ("limit_1", "limit_2"):
        events, go = run_limit(node, workload, size, connections=int(variant[-1]))
    elif variant == "helpers_bulk":
        events, go = run_helpers_bulk(node, workload, size)
    else:
        events, go = run_baseline(node, workload, config.baseline_changes)
    seconds, python_cpu, engine_cpu, stale = _timed(node, go)
    indexed, rates = counts(node, workload)
    if indexed != events:
        raise RuntimeError(f"{node.engine} {variant} batch {size}: {indexed} of {events} events indexed")
    if variant != BASELINE and rates != workload.symbols:
        raise RuntimeError(f"{node.engine} {variant} batch {size}: {rates} rates documents, {workload.symbols} symbols")
    return Run(node.engine, variant, size, repetition, events, seconds, python_cpu, engine_cpu, indexed, stale)


# ---------------------------------------------------------------- the benchmark


def start_node(engine: str, say: Callable[[str], None]) -> Node:
    from currencies_local.elasticsearch import start_elasticsearch  # noqa: PLC0415
    from currencies_local.opensearch import free_http_port, start_opensearch  # noqa: PLC0415
    from currencies_local.processes import free_port  # noqa: PLC0415

    work_dir = Path(tempfile.mkdtemp(prefix="currencies-bench-"))
    work_dir.chmod(0o711)
    port = free_port() if engine == "elasticsearch" else free_http_port()
    start = start_elasticsearch if engine == "elasticsearch" else start_opensearch
    say(f"starting {engine} on port {port}")
    process = start("127.0.0.1", port, work_dir / "node")
    return Node(engine, f"http://127.0.0.1:{port}", process=process, work_dir=work_dir)


def bench_engine(config: Config, node: Node, say: Callable[[str], None]) -> list[Run]:
    info = Http(node.url)
    try:
        # Not `GET /`: the Elasticsearch build from Maven Central has no root endpoint.
        (node.version,) = {
            n["version"] for n in info.json("GET", "/_nodes/_local?filter_path=nodes.*.version")["nodes"].values()
        }
    finally:
        info.close()
    workload = build_workload(config, uuid.uuid4().hex[:8])
    try:
        if config.warmup:  # the JVM's JIT and caches, untimed and unrecorded
            largest = max(config.batch_sizes)
            for variant in ("limit_1", "ours"):
                run_variant(node, workload, config, variant, largest, repetition=0)
        runs = []
        plan = schedule(config.repetitions, config.batch_sizes, baseline=config.baseline_changes > 0, seed=config.seed)
        for repetition, size, variant in plan:
            run = run_variant(node, workload, config, variant, size, repetition=repetition)
            say(
                f"{node.engine} r{repetition} batch {size:>4} {variant:<12} {run.events_per_second:>9,.0f} events/s  "
                f"python {run.python_cpu_s / run.events * 1e6:>6,.0f} µs/event  engine "
                + ("n/a" if run.engine_cpu_s is None else f"{run.engine_cpu_s / run.events * 1e6:,.0f} µs/event")
            )
            runs.append(run)
        return runs
    finally:
        remove_session(node, workload)


def run_benchmark(config: Config, command: str, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run every engine's schedule; the result as written to JSON (raw runs, summaries, ratios, bounds)."""
    runs: list[Run] = []
    engines: dict[str, dict[str, Any]] = {}
    for engine in config.engines:
        node = Node(engine, config.url, pid=config.node_pid) if config.url else start_node(engine, say)
        try:
            runs += bench_engine(config, node, say)
        finally:
            if node.process:
                node.process.stop()
            if node.work_dir:
                shutil.rmtree(node.work_dir, ignore_errors=True)
        engines[engine] = {"version": node.version, "engine_cpu_measured": node.cpu_seconds() is not None}
    raw = [run.as_json() for run in runs]
    summaries = summarise(raw)
    info = machine()
    return {
        "benchmark": "consumer",
        "mode": "full" if full_mode() else "quick",
        "command": command,
        "machine": info,
        "config": {key: value for key, value in asdict(config).items() if key not in ("url", "node_pid")},
        "engines": engines,
        "runs": raw,
        "summaries": summaries,
        "ratios": ratios(summaries),
        "bounds": {engine: bound_statement(summaries, engine, int(info["cores"] or 1)) for engine in engines},  # type: ignore[call-overload]
    }


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", type=click.Choice([*ENGINES, "both"]), default="both", show_default=True)
@click.option("--url", help="Use this running node (one engine only) instead of starting one.")
@click.option("--node-pid", type=int, help="With --url: the node's pid, to measure its CPU (else not measured).")
@click.option("--changes", type=int, help="Changes per run [default: 10,000 with BENCH_FULL=1, else 1,000].")
@click.option(
    "--baseline-changes", type=int,
    help="Changes for the one-request-per-event baseline; 0 skips it [default: 1,000 full, 200 quick].",
)  # fmt: skip
@click.option(
    "--batch-size", "batch_sizes", type=int, multiple=True,
    help=f"Changes per batch; repeat for several [default: {', '.join(map(str, BATCH_SIZES))}].",
)  # fmt: skip
@click.option("--repetitions", type=int, help="Interleaved repetitions [default: 5 full, 1 quick].")
@click.option("--seed", default=1, show_default=True, help="Seed of the changes and of the run order.")
@click.option("--no-warmup", is_flag=True, help="Skip the untimed warm-up pass per engine.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the results here.")
@click.option("--write-docs", is_flag=True, help="Write the tables into docs/benchmarks.md (section bench:consumer).")
def main(
    *,
    engine: str,
    url: str | None,
    node_pid: int | None,
    changes: int | None,
    baseline_changes: int | None,
    batch_sizes: tuple[int, ...],
    repetitions: int | None,
    seed: int,
    no_warmup: bool,
    json_path: Path | None,
    write_docs: bool,
) -> None:
    """Measure the consumer against the engine's raw bulk limit, helpers.bulk and one request per event."""
    full = full_mode()
    engines = ENGINES if engine == "both" else (engine,)
    if url and len(engines) > 1:
        raise click.UsageError("--url needs --engine elasticsearch or --engine opensearch")
    config = Config(
        engines=engines,
        changes=changes or (10_000 if full else 1_000),
        baseline_changes=(1_000 if full else 200) if baseline_changes is None else baseline_changes,
        batch_sizes=batch_sizes or BATCH_SIZES,
        repetitions=repetitions or (5 if full else 1),
        seed=seed,
        url=url,
        node_pid=node_pid,
        warmup=not no_warmup,
    )
    if node_pid and not url:
        raise click.UsageError("--node-pid goes with --url")
    if config.baseline_changes > config.changes:
        raise click.UsageError("--baseline-changes cannot exceed --changes")
    result = run_benchmark(config, command_line("consumer"), say=lambda line: click.echo(line, err=True))
    publish("consumer", result, render_markdown(result), json_path=json_path, write_docs=write_docs)


if __name__ == "__main__":
    main()
