"""End-to-end freshness at a steady write rate: how long until a write is searchable, and where that goes.

Starts the same `LocalPipeline` as `currencies up` (moto server, a real engine node, the
API, the stream and queue pollers; no Prometheus) on free ports, then POSTs at a steady
rate for a fixed time, each write a new symbol, from a pool of client threads (a write
is sent on schedule even while earlier ones are in flight). A watcher thread, every
`WATCH_S`, asks the engine about every write not yet seen:
- visible: a real-time multi-get of the rates index (no refresh needed) returns it: the
  pipeline's own latency (stream poll, relay, SNS, SQS poll, consumer, bulk);
- searchable: a search of the events index returns it: adds the engine's refresh.
Times are from the API's answer (the write is in the table), to the start of the first
watcher round that saw it, so they are late by at most one round.

The pipeline's part is split by its own histogram `currencies_stage_lag_seconds{stage}`
(issue 4), read from the in-process registry before and after the run; its quantiles
are bucket bounds. The configured polling interval and the engine's refresh interval
(read from the index settings) are stated beside the p99.

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

from bench.report import command_line, full_mode, machine, machine_line, publish
from chalicelib.observability.metrics import REGISTRY, STAGES
from currencies_local.opensearch import free_http_port
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import free_port

console = Console()
WATCH_S = 0.02
"""The watcher's round interval: the resolution of visible and searchable times."""
WATCH_AT_MOST = 100
"""Writes the watcher asks about per round (the oldest pending ones)."""
CLIENTS = 8
"""Client threads. More do not help here: the local API (moto) then answers slower and the rate falls."""
DRAIN_TIMEOUT_S = 60
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
    status: int | None = None
    visible: float | None = None
    searchable: float | None = None


@dataclass
class Run:
    writes: list[Write] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    writing_done: threading.Event = field(default_factory=threading.Event)


def symbols() -> itertools.product[tuple[str, ...]]:
    """Every three-letter symbol, in order: each write gets a new one (17,576 in all)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return itertools.product(letters, letters, letters)


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


def write(session: requests.Session, api: str, entry: Write) -> None:
    entry.sent = time.perf_counter()
    try:
        response = session.post(f"{api}/currency", json={"symbol": entry.symbol, "rate": entry.rate}, timeout=30)
        entry.status = response.status_code
    except requests.RequestException:
        entry.status = 0
    entry.answered = time.perf_counter()


def writer(api: str, rate_per_s: float, seconds: float, run: Run) -> None:
    """Send `rate_per_s` writes a second on a fixed schedule, from a pool of client threads."""
    local = threading.local()

    def send(entry: Write) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        write(local.session, api, entry)

    names = symbols()
    nonce = random.randrange(10**6)
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS, thread_name_prefix="writer") as pool:
        for n in range(round(rate_per_s * seconds)):
            scheduled = started + n / rate_per_s
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            entry = Write("".join(next(names)), unique_rate(n, nonce), scheduled)
            with run.lock:
                run.writes.append(entry)
            pool.submit(send, entry)
    run.writing_done.set()


def unique_rate(n: int, nonce: int) -> str:
    """Write `n`'s rate text: unique within a run, and across runs by `nonce` (a last digit 1: no trailing zero)."""
    return f"{n + 1}.{nonce:06d}1"


def watcher(search_url: str, run: Run, stop: threading.Event) -> None:
    """Every WATCH_S: which unseen writes are visible (real-time get) and which searchable (search)."""
    session = requests.Session()
    while not stop.is_set():
        round_started = time.perf_counter()
        with run.lock:
            # The oldest first, and a bounded number per round: the watcher's own queries must not
            # grow with a backlog and slow down the stack it measures (a full run at 50/s did).
            pending = [entry for entry in run.writes if entry.searchable is None][:WATCH_AT_MOST]
        unseen = {entry.symbol: entry for entry in pending if entry.visible is None}
        if unseen:
            docs = session.post(
                f"{search_url}/{RATES_INDEX}/_mget",
                json={"ids": list(unseen)},
                params={"_source_includes": "currency.rate"},
                timeout=10,
            ).json()["docs"]
            for doc in docs:
                entry = unseen[doc["_id"]]
                if doc.get("found") and doc["_source"].get("currency", {}).get("rate") == entry.rate:
                    entry.visible = round_started
        if pending:
            by_rate = {entry.rate: entry for entry in pending}
            query = {
                "size": len(by_rate),
                "_source": ["currency.rate"],
                "query": {"terms": {"currency.rate.exact": list(by_rate)}},
            }
            hits = session.post(f"{search_url}/{EVENTS_INDEX}/_search", json=query, timeout=10).json()["hits"]["hits"]
            for hit in hits:
                entry = by_rate.get(hit["_source"]["currency"]["rate"])
                if entry is None:
                    continue
                entry.searchable = round_started
                if entry.visible is None:  # seen by search before the get asked: visible by then too
                    entry.visible = round_started
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


def measure(pipeline: LocalPipeline, rate_per_s: float, seconds: float) -> dict[str, Any]:
    """Write at the steady rate, wait until every write is searchable (or the drain timeout), summarise."""
    run = Run()
    stages_before = histogram_snapshot("currencies_stage_lag_seconds")
    end_to_end_before = histogram_snapshot("currencies_end_to_end_lag_seconds")
    stop = threading.Event()
    watching = threading.Thread(target=watcher, args=(pipeline.search_url, run, stop), name="watcher", daemon=True)
    watching.start()
    started = time.perf_counter()
    with console.status(f"writing {rate_per_s:g}/s for {seconds:g} s"):
        writer(pipeline.api_url, rate_per_s, seconds, run)
    written_s = time.perf_counter() - started
    give_up = time.monotonic() + DRAIN_TIMEOUT_S
    with console.status("waiting until every write is searchable"):
        while time.monotonic() < give_up:
            with run.lock:
                waiting = sum(entry.searchable is None for entry in run.writes if entry.status in (200, 201))
            if not waiting:
                break
            time.sleep(0.1)
    stop.set()
    watching.join(timeout=15)
    time.sleep(0.5)  # the last bulk's histogram observations follow its response
    return summarise(
        run,
        rate_per_s=rate_per_s,
        seconds=seconds,
        written_s=written_s,
        stages=histogram_delta(stages_before, histogram_snapshot("currencies_stage_lag_seconds")),
        end_to_end=histogram_delta(end_to_end_before, histogram_snapshot("currencies_end_to_end_lag_seconds")),
    )


def summarise(
    run: Run,
    *,
    rate_per_s: float,
    seconds: float,
    written_s: float,
    stages: dict[str, dict[str, Any]],
    end_to_end: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The run's numbers: delays per write (from the API's answer), the stage split and what went missing."""
    accepted = [entry for entry in run.writes if entry.status in (200, 201) and entry.answered is not None]
    searchable = [entry for entry in accepted if entry.searchable is not None]
    late_send = [entry.sent - entry.scheduled for entry in run.writes if entry.sent]
    return {
        "rate_per_s": rate_per_s,
        "seconds": seconds,
        "writes": len(run.writes),
        "accepted": len(accepted),
        "refused_or_failed": len(run.writes) - len(accepted),
        "never_searchable": len(accepted) - len(searchable),
        "achieved_rate_per_s": round(len(run.writes) / written_s, 1),
        "send_delay_after_schedule_s": percentiles(late_send),
        "api_latency_s": percentiles([entry.answered - entry.sent for entry in accepted]),  # type: ignore[operator]
        "answer_to_visible_s": percentiles([entry.visible - entry.answered for entry in searchable]),  # type: ignore[operator]
        "visible_to_searchable_s": percentiles([entry.searchable - entry.visible for entry in searchable]),  # type: ignore[operator]
        "answer_to_searchable_s": percentiles([entry.searchable - entry.answered for entry in searchable]),  # type: ignore[operator]
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
    lines = [
        f"{result['writes']:,} API writes at a steady {result['rate_per_s']:g}/s for {result['seconds']:g} s "
        f"(achieved {result['achieved_rate_per_s']:g}/s; each a new symbol) through the local pipeline on "
        f"{result['engine']}; {result['mode']} run. Delays from the API's answer, seen by a watcher polling "
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
        machine_line(result["machine"]),
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


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
