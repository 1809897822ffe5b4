"""How fast the consumer indexes into a real engine, and what bounds it.

Feeds N change messages (SNS envelopes, as SQS delivers them) through the
production `consume()` and `SearchSink` in batches, into fresh indices, and reports
documents per second together with where the CPU time went: this process (the
consumer: parsing, building and encoding bulk bodies, HTTP) or the engine's JVM.
Messages are built before the clock starts; every run checks that all events landed.

    python -m bench.consumer_throughput --engine opensearch --messages 10000
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from chalicelib.config import SearchSettings
from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.sinks.sink import SearchSink, connect
from currencies_local.elasticsearch import start_elasticsearch
from currencies_local.opensearch import free_http_port, start_opensearch
from currencies_local.processes import ManagedProcess, free_port
from currencies_local.synthetic import random_table

console = Console()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    engine: str
    batch_size: int
    messages: int
    seconds: float
    events_per_second: float
    consumer_cpu_share: float
    engine_cpu_share: float | None
    events_indexed: int


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


def run_once(engine: str, url: str, node: ManagedProcess | None, bodies: list[str], batch_size: int) -> Result:
    run = uuid.uuid4().hex[:8]
    events_index, rates_index = f"bench-{run}-events", f"bench-{run}-rates"
    sink = SearchSink(connect(SearchSettings(engine=engine, url=url)), events_index, rates_index)  # type: ignore[arg-type]
    sink.ensure_indices()
    engine_cpu_before = tree_cpu_seconds(node.pid) if node else 0.0
    cpu_before, started = time.process_time(), time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{engine}, batches of {batch_size}", total=len(bodies))
        for start in range(0, len(bodies), batch_size):
            chunk = bodies[start : start + batch_size]
            batch = [InboundMessage(str(start + i), body) for i, body in enumerate(chunk)]
            report = consume(batch, sink, events_index=events_index, rates_index=rates_index)
            if report.failed_ids:
                raise click.ClickException(f"{len(report.failed_ids)} messages failed: {dict(report.outcomes)}")
            progress.advance(task, len(chunk))
    seconds = time.perf_counter() - started
    consumer_cpu = time.process_time() - cpu_before
    engine_cpu = tree_cpu_seconds(node.pid) - engine_cpu_before if node else None
    indexed = _searchable_events(sink, events_index, expected=len(bodies))
    return Result(
        engine=engine,
        batch_size=batch_size,
        messages=len(bodies),
        seconds=round(seconds, 3),
        events_per_second=round(len(bodies) / seconds, 1),
        consumer_cpu_share=round(consumer_cpu / seconds, 2),
        engine_cpu_share=None if engine_cpu is None else round(engine_cpu / seconds, 2),
        events_indexed=indexed,
    )


def _searchable_events(sink: SearchSink, index: str, expected: int, timeout_s: float = 15.0) -> int:
    """Events searchable after the refresh interval (waits for all, up to the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = sink.search_engine.search(index, {"size": 0, "track_total_hits": True}, 30)
        found = response["hits"]["total"]["value"]
        if found >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine", type=click.Choice(["elasticsearch", "opensearch"]), default="elasticsearch", show_default=True
)
@click.option("--url", help="Use this running node (then the engine's CPU share is not measured).")
@click.option("--messages", default=10_000, show_default=True, help="Change messages per run.")
@click.option("--symbols", default=200, show_default=True, help="Distinct currencies the changes touch.")
@click.option(
    "--batch-size", "batch_sizes", multiple=True, type=int, default=(1, 10, 100, 1000), show_default=True,
    help="Messages per consume() call (an SQS batch); repeat for several runs.",
)  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write results here.")
def main(
    *, engine: str, url: str | None, messages: int, symbols: int, batch_sizes: tuple[int, ...], json_path: Path | None
) -> None:
    """Measure the consumer's indexing rate into a real Elasticsearch or OpenSearch node."""
    table = random_table(messages, [f"S{n:04d}" for n in range(symbols)], seed=1)
    bodies = [json.dumps({"Type": "Notification", "Message": change.to_json()}) for change in table.changes()]
    node = None
    if url is None:
        work_dir = Path(tempfile.mkdtemp(prefix="currencies-bench-"))
        work_dir.chmod(0o711)
        port = free_port() if engine == "elasticsearch" else free_http_port()
        start = start_elasticsearch if engine == "elasticsearch" else start_opensearch
        with console.status(f"starting {engine}"):
            node = start("127.0.0.1", port, work_dir / "node")
        url = f"http://127.0.0.1:{port}"
    try:
        results = [run_once(engine, url, node, bodies, size) for size in batch_sizes]
    finally:
        if node:
            node.stop()
    report = Table(title=f"consumer -> {engine}: {messages} messages, {os.cpu_count()} cores")
    for column in ("batch size", "seconds", "events/s", "consumer CPU", "engine CPU", "events indexed"):
        report.add_column(column, justify="right")
    for r in results:
        engine_share = "n/a" if r.engine_cpu_share is None else f"{r.engine_cpu_share:.0%}"
        report.add_row(str(r.batch_size), f"{r.seconds:.2f}", f"{r.events_per_second:,.0f}",
                       f"{r.consumer_cpu_share:.0%}", engine_share, str(r.events_indexed))  # fmt: skip
    console.print(report)
    console.print("CPU shares are CPU seconds per wall second (100% = one core busy).")
    if json_path:
        json_path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
