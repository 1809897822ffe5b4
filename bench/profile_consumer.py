"""Where the consumer's Python time goes: a small driver for profiling `consume()` into a real engine.

Not a published benchmark (that is `bench.consumer`): this runs the production
`consume()` and `SearchSink` on the same 10,000 SNS-enveloped changes as
`bench.consumer`, at the batch sizes given, against a node it starts (or
`--url`), and prints events/s, Python CPU µs per event (this process, all threads) and
the engine's CPU µs per event (from /proc, when it knows the node's pid). Wrap it in
py-spy, or pass `--cprofile FILE`, to see where the Python time goes:

    python -m bench.profile_consumer node --engine elasticsearch          # prints URL and PID, waits
    python -m bench.profile_consumer run --url URL --node-pid PID -b 10 -b 1000
    .venv/bin/py-spy record -f raw -o out.txt -- python -m bench.profile_consumer run --url URL -b 1000
"""

from __future__ import annotations

import cProfile
import json
import signal
import tempfile
import time
import uuid
from pathlib import Path

import click

from bench.consumer import tree_cpu_seconds
from chalicelib.config import SearchSettings
from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.sinks.sink import SearchSink, connect
from currencies_local.elasticsearch import start_elasticsearch
from currencies_local.opensearch import free_http_port, start_opensearch
from currencies_local.processes import free_port
from currencies_local.synthetic import random_table


def envelopes(messages: int, symbols: int = 200) -> list[str]:
    """SQS bodies as an SNS subscription delivers them: the change inside a Notification."""
    table = random_table(messages, [f"S{n:04d}" for n in range(symbols)], seed=1)
    return [json.dumps({"Type": "Notification", "Message": change.to_json()}) for change in table.changes()]


def run_once(engine: str, url: str, node_pid: int | None, bodies: list[str], batch_size: int) -> dict[str, float]:
    """One pass of all bodies into fresh indices; the rates and per-event CPU costs."""
    run = uuid.uuid4().hex[:8]
    events_index, rates_index = f"profile-{run}-events", f"profile-{run}-rates"
    sink = SearchSink(connect(SearchSettings(engine=engine, url=url)), events_index, rates_index)  # type: ignore[arg-type]
    sink.ensure_indices()
    engine_before = tree_cpu_seconds(node_pid) if node_pid else 0.0
    cpu_before, started = time.process_time(), time.perf_counter()
    for start in range(0, len(bodies), batch_size):
        batch = [InboundMessage(str(start + i), body) for i, body in enumerate(bodies[start : start + batch_size])]
        report = consume(batch, sink, events_index=events_index, rates_index=rates_index)
        if report.failed_ids:
            raise click.ClickException(f"{len(report.failed_ids)} messages failed: {dict(report.outcomes)}")
    seconds = time.perf_counter() - started
    python_cpu = time.process_time() - cpu_before
    engine_cpu = tree_cpu_seconds(node_pid) - engine_before if node_pid else float("nan")
    for index in (events_index, rates_index):  # keep the node small across many runs
        sink.search_engine.delete_index(index, 30)
    n = len(bodies)
    return {
        "batch": batch_size,
        "events_per_s": round(n / seconds, 1),
        "python_us_per_event": round(python_cpu / n * 1e6, 1),
        "engine_us_per_event": round(engine_cpu / n * 1e6, 1),
    }


@click.group()
def main() -> None:
    """Profile the consumer against a real engine."""


@main.command()
@click.option("--engine", type=click.Choice(["elasticsearch", "opensearch"]), default="elasticsearch")
def node(engine: str) -> None:
    """Start a node on a free port, print its URL and PID, and keep it until interrupted."""
    work_dir = Path(tempfile.mkdtemp(prefix="currencies-profile-"))
    work_dir.chmod(0o711)
    # Blocked, so that sigwait (not the default action, which skips `finally`) receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    port = free_port() if engine == "elasticsearch" else free_http_port()
    start = start_elasticsearch if engine == "elasticsearch" else start_opensearch
    process = start("127.0.0.1", port, work_dir / "node")
    click.echo(f"http://127.0.0.1:{port} {process.pid}", nl=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        process.stop()


@main.command()
@click.option("--engine", type=click.Choice(["elasticsearch", "opensearch"]), default="elasticsearch")
@click.option("--url", required=True)
@click.option("--node-pid", type=int, help="The node's pid, to read its CPU time from /proc.")
@click.option("--messages", default=10_000, show_default=True)
@click.option("-b", "--batch-size", "batch_sizes", multiple=True, type=int, default=(10, 100, 1000))
@click.option("--cprofile", type=click.Path(dir_okay=False, path_type=Path), help="Write a cProfile of the runs.")
def run(
    *,
    engine: str,
    url: str,
    node_pid: int | None,
    messages: int,
    batch_sizes: tuple[int, ...],
    cprofile: Path | None,
) -> None:
    """Run the consumer over the messages once per batch size; one JSON line per run."""
    bodies = envelopes(messages)
    profiler = cProfile.Profile() if cprofile else None
    for size in batch_sizes:
        if profiler:
            profiler.enable()
        result = run_once(engine, url, node_pid, bodies, size)
        if profiler:
            profiler.disable()
        click.echo(json.dumps({"engine": engine, **result}))
    if profiler and cprofile:
        profiler.dump_stats(cprofile)


if __name__ == "__main__":
    main()
