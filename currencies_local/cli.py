"""`currencies`: the command line of the local runtime."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from chalicelib.observability.metrics import REGISTRY
from currencies_local.moto import aws_environment
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import StartupError
from currencies_ops.cli import COMMANDS

console = Console()
LOCK_PATH = Path(
    os.environ.get("CURRENCIES_LOCK_FILE", Path(tempfile.gettempdir()) / f"currencies-up-{os.getuid()}.lock")
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """currencies: a currency-rate API whose every change streams into a search engine."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address every local service binds to.")
@click.option("--api-port", default=8000, show_default=True, help="Port of the REST API.")
@click.option("--moto-port", default=5000, show_default=True, help="Port of moto server (local AWS).")
@click.option(
    "--engine",
    type=click.Choice(["elasticsearch", "opensearch"]),
    default="elasticsearch",
    show_default=True,
    help="Search engine to index into.",
)
@click.option(
    "--search-port",
    default=9200,
    show_default=True,
    help="Port of the engine node started here (OpenSearch: at most 9299).",
)
@click.option("--metrics-port", default=9108, show_default=True, help="Port of the Prometheus /metrics endpoint.")
@click.option(
    "--search-url",
    envvar=["CURRENCIES_SEARCH_URL", "ELASTICSEARCH_URL"],
    help="Use this running engine node instead of starting one [env: CURRENCIES_SEARCH_URL or ELASTICSEARCH_URL].",
)
@click.option(
    "--moto-url", envvar="MOTO_URL", help="Use this running moto server instead of starting one [env: MOTO_URL]."
)
@click.option(
    "--batch-size",
    default=10,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Messages per consumer invocation.",
)
@click.option("--prometheus-port", default=9090, show_default=True, help="Port of Prometheus (started here).")
@click.option("--pushgateway-port", default=9091, show_default=True, help="Port of the Pushgateway (started here).")
@click.option(
    "--prometheus/--no-prometheus",
    default=True,
    show_default=True,
    help="Start Prometheus (with the project's rules and alerts) and a Pushgateway, scraping the pipeline.",
)
def up(**options: object) -> None:
    """Start the whole pipeline locally and show events flowing; Ctrl-C stops everything.

    Starts moto server (DynamoDB, SNS, SQS), a real Elasticsearch or OpenSearch
    node (fetched from Maven Central on first run), Prometheus and a Pushgateway
    (Debian packages), serves the API and feeds the handlers Lambda-shaped events
    from the table's stream and the queue.
    """
    lock = _single_instance()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    pipeline = LocalPipeline(Options(**options), progress=console.log)  # type: ignore[arg-type]
    # SIGTERM (kill, systemd, a test harness) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with console.status("starting…"):
            pipeline.start()
        _write_lock(lock, pipeline)
        console.print(_endpoints(pipeline, time.monotonic() - started))
        with Live(_counts(pipeline), console=console, refresh_per_second=2) as live:
            while True:
                time.sleep(0.5)
                live.update(_counts(pipeline))
    except StartupError as error:
        console.print("[red]could not start:[/red]", escape(str(error)))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        # A second Ctrl-C must not cut the shutdown short and orphan the engine or moto.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pipeline.stop()
        lock.close()
    console.print("stopped.")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _single_instance() -> IO[str]:
    lock = LOCK_PATH.open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        running = lock.read().strip()
        details = json.loads(running) if running else {}
        console.print(
            f"[yellow]currencies up is already running[/yellow] (pid {details.get('pid', '?')}, "
            f"API on {details.get('api', '?')}). Use that one, or stop it (Ctrl-C in its terminal) first."
        )
        sys.exit(1)
    return lock


def _write_lock(lock: IO[str], pipeline: LocalPipeline) -> None:
    """Who runs, and the settings operator commands need to work on this pipeline (`currencies verify --local`)."""
    environment = {**aws_environment(pipeline.moto_url), **pipeline.environment}
    if pipeline.options.prometheus:
        environment["CURRENCIES_PUSHGATEWAY_URL"] = pipeline.pushgateway_url
    lock.seek(0)
    lock.truncate()
    lock.write(json.dumps({"pid": os.getpid(), "api": pipeline.api_url, "environment": environment}))
    lock.flush()


def _endpoints(pipeline: LocalPipeline, ready_after_s: float) -> Table:
    table = Table(title=f"currencies is up (ready in {ready_after_s:.1f} s)", show_header=False)
    table.add_row("API", pipeline.api_url + "/currency")
    table.add_row("moto (AWS)", pipeline.moto_url)
    table.add_row(pipeline.engine_title, pipeline.search_url)
    table.add_row("metrics", pipeline.metrics_url)
    if pipeline.options.prometheus:
        table.add_row("Prometheus", f"{pipeline.prometheus_url}/classic/graph  (alerts: /classic/alerts)")
        table.add_row("Pushgateway", pipeline.pushgateway_url)
    table.add_row("try", f'curl -X POST {pipeline.api_url}/currency --data \'{{"symbol":"USD","rate":"100"}}\'')
    return table


def _counts(pipeline: LocalPipeline) -> Table:
    def total(name: str, **labels: str) -> int:
        return int(REGISTRY.get_sample_value(name, labels) or 0)

    table = Table(title="events flowing (Ctrl-C stops)", caption="in DLQ: messages waiting in the dead-letter queue")
    for column in (
        "API requests",
        "stream records",
        "published",
        "indexed",
        "duplicate",
        "stale",
        "failed",
        "dead-lettered",
        "in DLQ",
    ):
        table.add_column(column, justify="right")
    api_requests = sum(
        int(sample.value)
        for metric in REGISTRY.collect()
        if metric.name == "currencies_api_requests"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    table.add_row(
        str(api_requests),
        str(pipeline.stream_poller.records if pipeline.stream_poller else 0),
        str(total("currencies_sns_publishes_total", outcome="published")),
        *(
            str(total("currencies_consumer_messages_total", outcome=o))
            for o in ("indexed", "duplicate", "stale", "failed", "dead_lettered")
        ),
        str(pipeline.dead_letter_depth()),
    )
    return table


for _command in COMMANDS:
    main.add_command(_command)
