"""End-to-end freshness at a steady write rate: how long until a write is searchable, and where that goes.

Starts the same `LocalPipeline` as `currencies up` (moto server, a real engine node, the
API, the stream and queue pollers; no Prometheus) on free ports, then POSTs at a steady
rate for a fixed time from a pool of client threads (a write is sent on schedule even
while earlier ones are in flight).

Every write UPDATES a symbol of a pool created before the clock starts, round-robin, so
at the offered rate a symbol is rewritten only every `REWRITE_EVERY_S` (1,000 symbols at
50/s): far longer than a write takes to become searchable. Updates, not creates, because
a create costs the API three DynamoDB calls (`RateStore.put`: an UpdateItem refused as
not live, one refused as not a tombstone, then the PutItem) and an update of a live
symbol one (the first UpdateItem succeeds). That is what a create-only run offering 50/s
measured as its bound (39.8/s), but it is not the whole cost: with the pipeline's own
moto calls (GetRecords, PublishBatch, ReceiveMessage, DeleteMessageBatch) moto server
spent about 22 ms of CPU per create and still 16-19 ms per update (2026-11-27), so on a
2-core machine moto (one Python process, at most about one core), the engine and this
process together fill the cores near 50/s. The set-up creates the pool and waits until
all of it is searchable, so its own traffic is over before anything is measured.

Every write carries a run-unique rate (`unique_rate`). A watcher thread, every `WATCH_S`,
asks the engine about the oldest (at most `WATCH_AT_MOST`) answered writes not yet seen:
- visible: a real-time multi-get of the rates index (no refresh needed) shows it: the
  pipeline's own latency (stream poll, relay, SNS, SQS poll, consumer, bulk). The rates
  document is versioned, so when it holds the rate of a write with revision r (from the
  API's answer), every write of that symbol with revision <= r was applied by then too;
  all of them count as visible at that round, also one rewritten before the watcher
  saw it;
- searchable: a search of the events index (one document per change) finds its rate:
  adds the engine's refresh.
Times are from the API's answer (the write is in the table) to the moment the first
watcher round that saw it chose what to ask, so they are late by at most one round.

The pipeline's part is split by its own histogram `currencies_stage_lag_seconds{stage}`
(issue 4), read from the in-process registry before and after the run; its quantiles
are bucket bounds. The configured polling interval and the engine's refresh interval
(read from the index settings) are stated beside the p99. Where the CPU went while
writing (moto server, the engine, this process, the whole machine) and the consumer
queue's largest depth are reported too: when the achieved rate falls short of the
offered one, they show what bounded it.

    python -m bench.freshness --json bench/results/freshness.json [--write-docs]
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import requests
from rich.console import Console

from bench.consumer import CLOCK_TICKS, tree_cpu_seconds
from bench.report import command_line, full_mode, machine, machine_line, publish
from chalicelib.observability.metrics import REGISTRY, STAGES
from currencies_local.opensearch import free_http_port
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import free_port

console = Console()
WATCH_S = 0.05
"""The watcher's round interval: the resolution of visible and searchable times."""
WATCH_AT_MOST = 100
"""Writes the watcher asks about per round (the oldest pending ones)."""
CLIENTS = 8
"""Client threads: enough for 50/s while the API answers within 160 ms. When the machine's CPU is saturated
the API slows, and more clients only feed the pipeline faster than moto and the engine can pass it on
(20-s runs offered 50/s on a busy machine: 12 clients achieved 44/s, 8 achieved 40/s, both falling behind)."""
DRAIN_TIMEOUT_S = 60
"""How long to wait after the last write (and after the set-up's writes) for everything to be searchable."""
REWRITE_EVERY_S = 20.0
"""The pool holds this many seconds of writes at the offered rate: each symbol is rewritten that often."""
ACCEPTED = (200, 201)
EVENTS_INDEX, RATES_INDEX = "currency-events", "currency-rates"
TARGET_ABOVE_S = 1.0
"""Issue 10's target: p99 less than this above the configured polling interval plus refresh."""


@dataclass
class Write:
    symbol: str
    rate: str
    """Unique to this write in this run (and, by a random part, across runs): what the watcher looks for."""
    scheduled: float
    sent: float = 0.0
    answered: float | None = None
    """Set last, after `status` and `revision`: a write with an answer has both."""
    status: int | None = None
    revision: int | None = None
    """The symbol's revision this write made, from the API's answer: orders the writes of one symbol."""
    visible: float | None = None
    searchable: float | None = None


@dataclass
class Run:
    pool: list[str] = field(default_factory=list)
    """The symbols written, created before the clock started."""
    writes: list[Write] = field(default_factory=list)
    by_rate: dict[str, Write] = field(default_factory=dict)
    """Every write of the measured run by its (unique) rate; set-up writes are not in it."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    writing_done: threading.Event = field(default_factory=threading.Event)


def symbols() -> itertools.product[tuple[str, ...]]:
    """Every three-letter symbol, in order: the pool takes the first ones (17,576 in all)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return itertools.product(letters, letters, letters)


def pool_size(rate_per_s: float, seconds: float) -> int:
    """Symbols to create: `REWRITE_EVERY_S` of writes at the rate, but never more than the run writes."""
    return max(1, min(round(rate_per_s * seconds), round(rate_per_s * REWRITE_EVERY_S)))


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (inclusive method: no extrapolation beyond the largest value) and max, in seconds."""
    if len(values) < 2:
        only = values[0] if values else float("nan")
        return {"p50": only, "p95": only, "p99": only, "max": only, "count": len(values)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 3),
        "p95": round(cuts[94], 3),
        "p99": round(cuts[98], 3),
        "max": round(max(values), 3),
        "count": len(values),
    }


def histogram_snapshot(name: str) -> dict[str, dict[float, float]]:
    """Cumulative bucket counts (le -> count) of a histogram in the registry, by its `stage` label ('' if none)."""
    snapshot: dict[str, dict[float, float]] = {}
    for metric in REGISTRY.collect():
        if metric.name != name:
            continue
        for sample in metric.samples:
            key = sample.labels.get("stage", "")
            if sample.name.endswith("_bucket"):
                snapshot.setdefault(key, {})[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                snapshot.setdefault(key, {})[-1.0] = sample.value  # the sum, under a key no bucket has
    return snapshot


def histogram_delta(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, dict[str, Any]]:
    """What the run added: count, mean and the p50/p99 bucket bounds per label."""
    summary = {}
    for key, buckets in after.items():
        added = {le: count - before.get(key, {}).get(le, 0.0) for le, count in buckets.items()}
        total_sum = added.pop(-1.0, 0.0)
        count = added.get(float("inf"), 0.0)
        bounds = sorted(added.items())
        summary[key] = {
            "count": int(count),
            "mean_s": round(total_sum / count, 3) if count else None,
            "p50_le_s": _bound(bounds, 0.5 * count) if count else None,
            "p99_le_s": _bound(bounds, 0.99 * count) if count else None,
        }
    return summary


def _bound(bounds: list[tuple[float, float]], rank: float) -> float:
    return next(le for le, count in bounds if count >= rank)


class Clients:
    """A pool of client threads, each with its own HTTP session (keep-alive)."""

    def __init__(self, api: str) -> None:
        self.api = api
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(CLIENTS, thread_name_prefix="writer")

    def write(self, entry: Write) -> None:
        """POST one write; record when it went, how it was answered and the revision it made."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        entry.sent = time.perf_counter()
        body = {"symbol": entry.symbol, "rate": entry.rate}
        try:
            response = self._local.session.post(f"{self.api}/currency", json=body, timeout=30)
            entry.status = response.status_code
            if response.status_code in ACCEPTED:
                entry.revision = int(response.json()["revision"])
        except (requests.RequestException, ValueError, KeyError):
            entry.status = entry.status or 0
        entry.answered = time.perf_counter()


def create_pool(clients: Clients, search_url: str, pool: list[str], nonce: int) -> float:
    """Create the pool's symbols (rates 0 .. len(pool) - 1) and wait until every one is searchable.

    Runs before the clock starts, so that the measured writes are all updates and the
    set-up's own traffic (creates, stream, queue, bulk, refresh) is over before them.
    Returns the seconds it took.
    """
    started = time.perf_counter()
    entries = [Write(symbol, unique_rate(n, nonce), started) for n, symbol in enumerate(pool)]
    list(clients.pool.map(clients.write, entries))
    failed = [entry for entry in entries if entry.status not in ACCEPTED]
    if failed:
        raise click.ClickException(f"{len(failed)} of the pool's {len(pool)} creates failed (first: {failed[0]})")
    query = {"terms": {"currency.rate.exact": [entry.rate for entry in entries]}}
    give_up = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        response = requests.post(f"{search_url}/{EVENTS_INDEX}/_count", json={"query": query}, timeout=10)
        if response.ok and response.json()["count"] >= len(pool):
            break
        if time.monotonic() > give_up:
            raise click.ClickException(f"the pool's creates were not all searchable after {DRAIN_TIMEOUT_S} s")
        time.sleep(0.2)
    time.sleep(0.5)  # the last bulk's histogram observations follow its response
    return time.perf_counter() - started


def writer(clients: Clients, rate_per_s: float, seconds: float, run: Run, nonce: int) -> None:
    """Send `rate_per_s` writes a second on a fixed schedule, each an update of the next symbol of the pool."""
    started = time.perf_counter()
    first = len(run.pool)  # the set-up's creates had the rates below
    with clients.pool:
        for n in range(round(rate_per_s * seconds)):
            scheduled = started + n / rate_per_s
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            entry = Write(run.pool[n % len(run.pool)], unique_rate(first + n, nonce), scheduled)
            with run.lock:
                run.writes.append(entry)
                run.by_rate[entry.rate] = entry
            clients.pool.submit(clients.write, entry)
    run.writing_done.set()


def unique_rate(n: int, nonce: int) -> str:
    """Write `n`'s rate text: unique within a run, and across runs by `nonce` (a last digit 1: no trailing zero)."""
    return f"{n + 1}.{nonce:06d}1"


def mark_visible(pending: list[Write], shown: dict[str, str], by_rate: dict[str, Write], at: float) -> None:
    """Mark visible `at` every pending write whose symbol's rates document shows it or a later write.

    `shown` maps a symbol to the rate its rates document holds. The document is written
    with external versions, so if it holds the rate of the write with revision r, every
    write of that symbol with revision <= r was applied by then too (later ones may
    have replaced it before the watcher looked).
    """
    for entry in pending:
        if entry.visible is not None or entry.revision is None:
            continue
        holder = by_rate.get(shown.get(entry.symbol, ""))
        if holder is None or holder.symbol != entry.symbol or holder.revision is None:
            continue  # a set-up rate, or a write whose answer has not come back yet: ask again next round
        if entry.revision <= holder.revision:
            entry.visible = at


def watcher(search_url: str, run: Run, stop: threading.Event) -> None:
    """Every WATCH_S: which unseen writes are visible (real-time get) and which searchable (search)."""
    session = requests.Session()
    while not stop.is_set():
        round_started = time.perf_counter()
        with run.lock:
            # The oldest answered ones first, and a bounded number per round: the watcher's own queries
            # must not grow with a backlog and slow down the stack it measures (a full run at 50/s did).
            pending = [
                entry
                for entry in run.writes
                if entry.searchable is None and entry.answered is not None and entry.status in ACCEPTED
            ][:WATCH_AT_MOST]
            by_rate = dict(run.by_rate) if pending else {}
        seen_at = time.perf_counter()  # after every pending write's answer: no delay comes out negative
        unseen = sorted({entry.symbol for entry in pending if entry.visible is None})
        if unseen:
            docs = session.post(
                f"{search_url}/{RATES_INDEX}/_mget",
                json={"ids": unseen},
                params={"_source_includes": "currency.rate"},
                timeout=10,
            ).json()["docs"]
            shown = {
                doc["_id"]: doc["_source"]["currency"]["rate"]
                for doc in docs
                if doc.get("found") and "rate" in doc["_source"].get("currency", {})
            }
            mark_visible(pending, shown, by_rate, seen_at)
        if pending:
            by_pending_rate = {entry.rate: entry for entry in pending}
            query = {
                "size": len(by_pending_rate),
                "_source": ["currency.rate"],
                "query": {"terms": {"currency.rate.exact": list(by_pending_rate)}},
            }
            hits = session.post(f"{search_url}/{EVENTS_INDEX}/_search", json=query, timeout=10).json()["hits"]["hits"]
            for hit in hits:
                entry = by_pending_rate.get(hit["_source"]["currency"]["rate"])
                if entry is None:
                    continue
                entry.searchable = seen_at
                if entry.visible is None:  # seen by search before the get asked: visible by then too
                    entry.visible = seen_at
        stop.wait(max(0.0, WATCH_S - (time.perf_counter() - round_started)))


def refresh_interval(search_url: str) -> tuple[str, bool]:
    """The events index's refresh interval as the engine applies it, and whether the index sets it (else default)."""
    response = requests.get(
        f"{search_url}/{EVENTS_INDEX}/_settings",
        params={"include_defaults": "true", "flat_settings": "true"},
        timeout=10,
    ).json()
    (settings,) = response.values()
    own = settings.get("settings", {}).get("index.refresh_interval")
    return (own, True) if own else (settings["defaults"]["index.refresh_interval"], False)


def seconds_of(interval: str) -> float:
    """An engine time value such as '1s' or '500ms' in seconds."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if interval.endswith(suffix) and interval[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(interval[: -len(suffix)]) * scale
    raise ValueError(f"not a time value: {interval!r}")


def cpu_seconds(pipeline: LocalPipeline) -> dict[str, float]:
    """CPU seconds so far of the parts that share the machine, and the machine's busy and total seconds.

    moto server is one Python process (so at most about one core), the engine its own
    process tree (absent with --url); this process runs the API, both pollers, the
    consumer, the clients and the watcher.
    """
    times = {"this_process": time.process_time()}
    for process in pipeline.processes:
        times["moto" if process.name == "moto server" else "engine"] = tree_cpu_seconds(process.pid)
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    times["machine_total"] = sum(fields[:8]) / CLOCK_TICKS  # user .. steal; guest time is inside user
    times["machine_busy"] = times["machine_total"] - (fields[3] + fields[4]) / CLOCK_TICKS  # less idle and iowait
    return times


def cpu_use(before: dict[str, float], after: dict[str, float], wall_s: float) -> dict[str, int]:
    """Percent of one core each part used over `wall_s`, and how busy the whole machine was (percent of all cores)."""
    use = {
        f"{part}_pct_of_core": round(100 * (after[part] - before[part]) / wall_s)
        for part in ("moto", "engine", "this_process")
        if part in before and part in after
    }
    total = after["machine_total"] - before["machine_total"]
    use["machine_busy_pct"] = round(100 * (after["machine_busy"] - before["machine_busy"]) / total) if total else 0
    return use


def queue_depth() -> int:
    """The consumer queue's depth as the local runtime's sampler last saw it (every 2 s)."""
    return int(REGISTRY.get_sample_value("currencies_queue_messages", {"queue": "consumer"}) or 0)


def sample_depths(depths: list[int], stop: threading.Event) -> None:
    """The consumer queue's depth every second until `stop`: a backlog that grows means the stack is overloaded."""
    while not stop.wait(1.0):
        depths.append(queue_depth())


def measure(pipeline: LocalPipeline, rate_per_s: float, seconds: float) -> dict[str, Any]:
    """Create the pool, write at the steady rate, wait until every write is searchable (or the drain timeout)."""
    run = Run(pool=["".join(name) for name in itertools.islice(symbols(), pool_size(rate_per_s, seconds))])
    nonce = random.randrange(10**6)
    clients = Clients(pipeline.api_url)
    with console.status(f"creating {len(run.pool):,} symbols and waiting until they are searchable"):
        set_up_s = create_pool(clients, pipeline.search_url, run.pool, nonce)
    stages_before = histogram_snapshot("currencies_stage_lag_seconds")
    end_to_end_before = histogram_snapshot("currencies_end_to_end_lag_seconds")
    stop = threading.Event()
    watching = threading.Thread(target=watcher, args=(pipeline.search_url, run, stop), name="watcher", daemon=True)
    watching.start()
    depths: list[int] = []
    sampling = threading.Thread(target=sample_depths, args=(depths, stop), name="depths", daemon=True)
    sampling.start()
    cpu_before = cpu_seconds(pipeline)
    started = time.perf_counter()
    with console.status(f"writing {rate_per_s:g}/s for {seconds:g} s"):
        writer(clients, rate_per_s, seconds, run, nonce)
    written_s = time.perf_counter() - started
    cpu_while_writing = cpu_use(cpu_before, cpu_seconds(pipeline), written_s)
    give_up = time.monotonic() + DRAIN_TIMEOUT_S
    with console.status("waiting until every write is searchable"):
        while time.monotonic() < give_up:
            with run.lock:
                waiting = sum(entry.searchable is None for entry in run.writes if entry.status in ACCEPTED)
            if not waiting:
                break
            time.sleep(0.1)
    stop.set()
    watching.join(timeout=15)
    sampling.join(timeout=5)
    time.sleep(0.5)  # the last bulk's histogram observations follow its response
    return summarise(
        run,
        rate_per_s=rate_per_s,
        seconds=seconds,
        written_s=written_s,
        set_up_s=set_up_s,
        cpu_while_writing=cpu_while_writing,
        queue_depth_max=max(depths, default=0),
        stages=histogram_delta(stages_before, histogram_snapshot("currencies_stage_lag_seconds")),
        end_to_end=histogram_delta(end_to_end_before, histogram_snapshot("currencies_end_to_end_lag_seconds")),
    )


def summarise(
    run: Run,
    *,
    rate_per_s: float,
    seconds: float,
    written_s: float,
    set_up_s: float,
    stages: dict[str, dict[str, Any]],
    end_to_end: dict[str, dict[str, Any]],
    cpu_while_writing: dict[str, int] | None = None,
    queue_depth_max: int = 0,
) -> dict[str, Any]:
    """The run's numbers: delays per write (from the API's answer), the stage split and what went missing."""
    accepted = [entry for entry in run.writes if entry.status in ACCEPTED and entry.answered is not None]
    searchable = [entry for entry in accepted if entry.searchable is not None]
    late_send = [entry.sent - entry.scheduled for entry in run.writes if entry.sent]
    return {
        "rate_per_s": rate_per_s,
        "seconds": seconds,
        "pool_symbols": len(run.pool),
        "set_up_s": round(set_up_s, 1),
        "writes": len(run.writes),
        "accepted": len(accepted),
        "created": sum(entry.status == 201 for entry in accepted),
        "refused_or_failed": len(run.writes) - len(accepted),
        "never_searchable": len(accepted) - len(searchable),
        "achieved_rate_per_s": round(len(run.writes) / written_s, 1),
        "send_delay_after_schedule_s": percentiles(late_send),
        "api_latency_s": percentiles([entry.answered - entry.sent for entry in accepted]),  # type: ignore[operator]
        "answer_to_visible_s": percentiles([entry.visible - entry.answered for entry in searchable]),  # type: ignore[operator]
        "visible_to_searchable_s": percentiles([entry.searchable - entry.visible for entry in searchable]),  # type: ignore[operator]
        "answer_to_searchable_s": percentiles([entry.searchable - entry.answered for entry in searchable]),  # type: ignore[operator]
        "cpu_while_writing": cpu_while_writing or {},
        "consumer_queue_depth_max": queue_depth_max,
        "stage_lag": {stage: stages.get(stage) for stage in STAGES},
        "end_to_end_lag": end_to_end.get(""),
    }


def run_once(engine: str, rate_per_s: float, seconds: float, search_url: str | None = None) -> dict[str, Any]:
    """Start a pipeline on free ports (on the node at `search_url` if given, else a new one), measure, stop it."""
    search_port = free_port() if engine == "elasticsearch" else free_http_port()
    options = Options(
        api_port=free_port(), moto_port=free_port(), metrics_port=free_port(), engine=engine,  # type: ignore[arg-type]
        search_port=search_port, search_url=search_url, prometheus=False,
    )  # fmt: skip
    pipeline = LocalPipeline(options)
    with console.status(f"starting the pipeline on {engine}"):
        pipeline.start()
    try:
        assert pipeline.stream_poller is not None
        assert pipeline.queue_poller is not None
        configuration: dict[str, Any] = {
            "stream_poll_idle_s": pipeline.stream_poller._idle_sleep_s,
            "sqs_long_poll_s": pipeline.queue_poller._wait_s,
            "consumer_batch_size": options.batch_size,
        }
        configuration["refresh_interval"], configuration["refresh_set_on_index"] = refresh_interval(pipeline.search_url)
        result = measure(pipeline, rate_per_s, seconds)
    finally:
        pipeline.stop()
    return {"engine": engine, "configuration": configuration, **result}


def verdict(result: dict[str, Any]) -> dict[str, float | bool]:
    """p99 above the configured polling interval plus refresh, against the target."""
    configured = result["configuration"]
    floor = configured["stream_poll_idle_s"] + seconds_of(configured["refresh_interval"])
    above = result["answer_to_searchable_s"]["p99"] - floor
    return {"polling_plus_refresh_s": floor, "p99_above_s": round(above, 3), "met": above < TARGET_ABOVE_S}


def markdown(result: dict[str, Any], command: str) -> str:
    """The doc section: delays, the stage split, the configuration and the target."""
    configured, check = result["configuration"], result["verdict"]
    pool = result["pool_symbols"]
    spacing = f"rewritten every {pool / result['rate_per_s']:g} s" if result["writes"] > pool else "written once"
    lines = [
        f"{result['writes']:,} API writes at a steady {result['rate_per_s']:g}/s for {result['seconds']:g} s "
        f"(achieved {result['achieved_rate_per_s']:g}/s) through the local pipeline on {result['engine']}; "
        f"{result['mode']} run. Each write updates one of {pool:,} symbols in turn (each {spacing}), all "
        f"created and searchable before the clock started; {result['created']} write(s) created a symbol instead. "
        f"Delays from the API's answer, seen by a watcher polling "
        f"every {WATCH_S * 1000:.0f} ms; {result['never_searchable']} write(s) not yet searchable when "
        f"the watcher gave up ({DRAIN_TIMEOUT_S} s after the last write), "
        f"{result['refused_or_failed']} refused or failed.",
        "",
        "| delay | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, title in (
        ("api_latency_s", "API request (sent -> answered)"),
        ("answer_to_visible_s", "answered -> visible (real-time get: the pipeline)"),
        ("visible_to_searchable_s", "visible -> searchable (the engine's refresh)"),
        ("answer_to_searchable_s", "**answered -> searchable**"),
    ):
        values = result[key]
        lines.append(f"| {title} | {values['p50']:.3f} s | {values['p95']:.3f} s | {values['p99']:.3f} s "
                     f"| {values['max']:.3f} s |")  # fmt: skip
    lines += [
        "",
        "The pipeline's part by stage (`currencies_stage_lag_seconds`; p50/p99 are bucket bounds):",
        "",
        "| stage | what it includes | changes | mean | p50 ≤ | p99 ≤ |",
        "|---|---|---:|---:|---:|---:|",
    ]
    includes = {
        "table_to_stream": f"stream poll (idle sleep {configured['stream_poll_idle_s']:g} s), GetRecords, relay",
        "stream_to_consumer": f"SNS, SQS, queue poll (long poll {configured['sqs_long_poll_s']} s)",
        "consumer_to_indexed": f"consumer batch (up to {configured['consumer_batch_size']}), bulk request",
    }
    rows = [*((stage, result["stage_lag"][stage]) for stage in STAGES), ("end to end", result["end_to_end_lag"])]
    for stage, values in rows:
        if not values or not values["count"]:
            lines.append(f"| {stage} | {includes.get(stage, '')} | 0 | | | |")
            continue
        lines.append(
            f"| {stage} | {includes.get(stage, 'table -> indexed')} | {values['count']:,} | {values['mean_s']:.3f} s "
            f"| {values['p50_le_s']:g} s | {values['p99_le_s']:g} s |"
        )
    lines += [
        "",
        f"Configured: stream poll every {configured['stream_poll_idle_s']:g} s when idle, refresh interval "
        f"{configured['refresh_interval']} "
        f"({'set on the index' if configured['refresh_set_on_index'] else 'the engine default: the index sets none'}): "
        f"{check['polling_plus_refresh_s']:g} s together. p99 answered -> searchable is "
        f"{check['p99_above_s']:+.3f} s above that; target < {TARGET_ABOVE_S:g} s above: "
        f"{'met' if check['met'] else 'missed'}.",
        "",
        cpu_line(result),
        "",
        machine_line(result["machine"]),
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


def cpu_line(result: dict[str, Any]) -> str:
    """Where the machine's CPU went while writing: what bounds the achieved rate when it falls short."""
    use = result["cpu_while_writing"]
    parts = [
        f"{title} {use[key]} %"
        for key, title in (
            ("moto_pct_of_core", "moto server (one Python process: about 100 % at most)"),
            ("engine_pct_of_core", "the engine"),
            ("this_process_pct_of_core", "this process (API, pollers, consumer, clients, watcher)"),
        )
        if key in use
    ]
    return (
        f"While writing, the machine's {result['machine']['cores']} cores were {use.get('machine_busy_pct', '?')} % "
        f"busy (other programs included); of one core, {', '.join(parts) or 'nothing measured'}. "
        f"The consumer queue held at most {result['consumer_queue_depth_max']:,} message(s) (sampled every 2 s)."
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine", type=click.Choice(["elasticsearch", "opensearch"]), default="elasticsearch", show_default=True
)
@click.option("--rate", type=float, help="Writes per second [default: 50 full, 20 quick].")
@click.option("--seconds", type=float, help="How long to write [default: 60 full, 10 quick].")
@click.option("--url", "search_url", help="Use this running engine node instead of starting one.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write results here.")
@click.option("--write-docs", is_flag=True, help="Write the tables into docs/benchmarks.md (bench:freshness).")
def main(  # noqa: PLR0917 - click passes every option
    engine: str,
    rate: float | None,
    seconds: float | None,
    search_url: str | None,
    json_path: Path | None,
    write_docs: bool,
) -> None:
    """Write at a steady rate through the local pipeline; p50/p95/p99 of write -> searchable, split."""
    full = full_mode()
    result = run_once(engine, rate or (50.0 if full else 20.0), seconds or (60.0 if full else 10.0), search_url)
    result = {"mode": "full" if full else "quick", "machine": machine(), **result}
    result["verdict"] = verdict(result)
    text = markdown(result, command_line("freshness"))
    publish("freshness", result, text, json_path=json_path, write_docs=write_docs)


if __name__ == "__main__":
    main()
