"""Load: many concurrent clients write through the whole local pipeline, then `verify` must be clean.

Starts the same `LocalPipeline` as `currencies up` on free ports (moto server, a real
engine node, the API, both pollers; no Prometheus), then `--clients` threads POST and
DELETE rates over `--symbols` symbols until `--changes` writes were made. Reports what it
measured on this machine:
- API throughput (writes/s) and client-side latency p50/p95/p99;
- drain: from the last write until every change is in the events index;
- the consumer's end-to-end lag (table -> indexed) p50/p99, read from its histogram as
  bucket bounds (Prometheus' histogram_quantile would interpolate within them);
and then runs `currencies verify` on the result, which must be clean.

    python -m bench.load --changes 10000 --clients 16 --json bench/results/load.json
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import requests
from rich.console import Console
from rich.progress import Progress

from chalicelib.config import SearchSettings, Settings
from chalicelib.observability.metrics import REGISTRY
from chalicelib.sinks.base import SearchEngine
from chalicelib.sinks.sink import connect
from currencies_local.moto import aws_environment
from currencies_local.opensearch import free_http_port
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import free_port
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target
from currencies_ops.verify import verify

console = Console()
DRAIN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Load:
    engine: str
    changes: int
    clients: int
    symbols: int
    batch_size: int


@dataclass
class Measured:
    latencies: list[float] = field(default_factory=list)
    made: list[int] = field(default_factory=list)
    """1 per write that changed the table (so made a stream record), 0 for a DELETE of a missing symbol."""
    queue_depths: list[int] = field(default_factory=list)
    """The consumer queue's depth, sampled while writing and draining: a growing backlog means overload."""


def client(api: str, symbols: list[str], writes: int, seed: int, measured: Measured) -> None:
    """One client: `writes` POSTs (9 in 10) and DELETEs."""
    rng = random.Random(seed)
    latencies, made = measured.latencies, measured.made
    session = requests.Session()
    for _ in range(writes):
        symbol = rng.choice(symbols)
        started = time.perf_counter()
        if rng.random() < 0.1:
            response = session.delete(f"{api}/currency/{symbol}", timeout=30)
            changed = response.status_code == 200
            assert response.status_code in (200, 404), response.text
        else:
            body = {"symbol": symbol, "rate": f"{rng.randint(1, 10**6) / 1000:.3f}"}
            response = session.post(f"{api}/currency", json=body, timeout=30)
            changed = response.status_code in (200, 201)
            assert changed, response.text
        latencies.append(time.perf_counter() - started)
        made.append(int(changed))


def queue_depth() -> int:
    """The consumer queue's depth as the local runtime's sampler last saw it (every 2 s)."""
    return int(REGISTRY.get_sample_value("currencies_queue_messages", {"queue": "consumer"}) or 0)


def lag_bounds(quantiles: tuple[float, ...]) -> dict[str, float]:
    """Upper bucket bounds of the end-to-end lag histogram at these quantiles."""
    buckets = sorted(
        (float(sample.labels["le"]), sample.value)
        for metric in REGISTRY.collect()
        if metric.name == "currencies_end_to_end_lag_seconds"
        for sample in metric.samples
        if sample.name.endswith("_bucket")
    )
    total = buckets[-1][1]
    return {f"p{round(q * 100)}": next(le for le, count in buckets if count >= q * total) for q in quantiles}


def events_indexed(search: SearchEngine) -> int:
    search.refresh("currency-events", 30)
    return search.search("currency-events", {"size": 0, "track_total_hits": True}, 30)["hits"]["total"]["value"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine", type=click.Choice(["elasticsearch", "opensearch"]), default="elasticsearch", show_default=True
)
@click.option("--changes", default=10_000, show_default=True, help="API writes in all.")
@click.option("--clients", default=16, show_default=True, help="Concurrent clients (threads).")
@click.option("--symbols", default=200, show_default=True, help="Distinct symbols written.")
@click.option("--batch-size", default=10, show_default=True, help="Messages per consumer invocation (SQS: 10).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the results here.")
def main(json_path: Path | None, **options: Any) -> None:
    """Write `--changes` rates from concurrent clients through the local pipeline; measure; verify."""
    load = Load(**options)
    engine = load.engine
    search_port = free_port() if engine == "elasticsearch" else free_http_port()
    options = Options(
        api_port=free_port(), moto_port=free_port(), metrics_port=free_port(), engine=engine,  # type: ignore[arg-type]
        search_port=search_port, batch_size=load.batch_size, prometheus=False,
    )  # fmt: skip
    pipeline = LocalPipeline(options)
    with console.status(f"starting the pipeline on {engine}"):
        pipeline.start()
    try:
        results = run(pipeline, load)
    finally:
        pipeline.stop()
    console.print_json(json.dumps(results))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    if not results["verify"]["clean"]:
        raise SystemExit(1)


def run(pipeline: LocalPipeline, load: Load) -> dict[str, Any]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    symbols = [f"L{a}{b}" for a in letters for b in letters][: load.symbols]
    measured = Measured()
    latencies, changes = measured.latencies, load.changes
    share, rest = divmod(changes, load.clients)
    threads = [
        threading.Thread(target=client, args=(pipeline.api_url, symbols, share + (n < rest), n, measured), daemon=True)
        for n in range(load.clients)
    ]
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("writing", total=changes)
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            progress.update(task, completed=len(latencies))
            measured.queue_depths.append(queue_depth())
            time.sleep(0.2)
    written_s = time.perf_counter() - started
    assert len(latencies) == changes, "a client failed; see its traceback above"
    stream_records = sum(measured.made)
    search = connect(SearchSettings(engine=load.engine, url=pipeline.search_url))  # type: ignore[arg-type]
    give_up = time.monotonic() + DRAIN_TIMEOUT_S
    while events_indexed(search) < stream_records:
        if time.monotonic() > give_up:
            raise SystemExit(f"not every change was indexed {DRAIN_TIMEOUT_S} s after the last write")
        measured.queue_depths.append(queue_depth())
        time.sleep(0.2)
    drained_s = time.perf_counter() - started - written_s

    environment = {**aws_environment(pipeline.moto_url), **pipeline.environment}
    aws = {name: value for name, value in environment.items() if name.startswith("AWS_")}
    target = Target(Settings.from_env(environment), "load benchmark", aws)
    checked = time.perf_counter()
    report = verify(target, OperationMetrics("verify", None))
    percentiles = statistics.quantiles(latencies, n=100)
    return {
        "engine": load.engine,
        "date": time.strftime("%Y-%m-%d"),
        "clients": load.clients,
        "symbols": load.symbols,
        "consumer_batch_size": load.batch_size,
        "api_writes": changes,
        "stream_records": stream_records,
        "api_writes_per_s": round(changes / written_s, 1),
        "api_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 1),
            "p95": round(percentiles[94] * 1000, 1),
            "p99": round(percentiles[98] * 1000, 1),
        },
        "writing_s": round(written_s, 1),
        "drain_after_last_write_s": round(drained_s, 1),
        "consumer_queue_depth_max": max(measured.queue_depths, default=0),
        "end_to_end_lag_s_bucket_bounds": lag_bounds((0.5, 0.99)),
        "verify": {
            "clean": report.clean,
            "differences": report.total,
            "first": [f"{d.kind} {d.symbol}: table {d.table}, index {d.index}" for d in report.differences[:5]],
            "seconds": round(time.perf_counter() - checked, 1),
        },
    }


if __name__ == "__main__":
    main()
