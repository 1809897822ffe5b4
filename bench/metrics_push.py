"""What getting metrics out of Lambda costs: one push per invocation, and one janitor run.

Starts a real Pushgateway (Debian package), pushes the production registry (every
route and known label value initialised, as in a warm consumer container) N times,
and times each push, the time a Lambda invocation pays on top of its work. Then
leaves G idle container groups and times one janitor run retiring them all.

    python -m bench.metrics_push --pushes 500 --groups 500
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import click
from rich.console import Console
from rich.progress import track

from chalicelib.observability import janitor, metrics
from chalicelib.observability.push import MetricsPusher
from chalicelib.observability.pushgateway import Pushgateway
from currencies_local.processes import free_port
from currencies_local.prometheus import start_pushgateway

console = Console()
ROUTES = {
    "/currency": {"GET": None, "POST": None},
    "/currency/{symbol}": {"GET": None, "PUT": None, "DELETE": None},
    "/currency/{symbol}/history": {"GET": None},
}


def percentile(sorted_values: list[float], share: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * share))]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--pushes", default=500, show_default=True, help="Pushes to time.")
@click.option("--groups", default=500, show_default=True, help="Idle container groups for the janitor to retire.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the results here.")
def main(pushes: int, groups: int, json_path: Path | None) -> None:
    """Time one push per invocation and one janitor run against a real Pushgateway."""
    port = free_port()
    gateway_process = start_pushgateway("127.0.0.1", port, Path(tempfile.mkdtemp(prefix="bench-push-")))
    try:
        gateway = Pushgateway(f"http://127.0.0.1:{port}")
        metrics.start_routes_at_zero(ROUTES)  # type: ignore[arg-type]
        pusher = MetricsPusher(gateway, "bench-consumer", rotate_after_s=300)
        took = []
        for _ in track(range(pushes), description="pushing", console=console):
            metrics.CONSUMER_MESSAGES.labels("indexed").inc(10)
            metrics.END_TO_END_LAG.observe(0.4)
            started = time.perf_counter()
            assert pusher.push(5.0)
            took.append(time.perf_counter() - started)
        took.sort()
        series = sum(len(family.samples) for family in metrics.REGISTRY.collect())
        for _ in track(range(groups), description="idle groups", console=console):
            assert MetricsPusher(gateway, "bench-idle", rotate_after_s=300).push(5.0)
        started = time.perf_counter()
        retired = janitor.retire_idle_groups(gateway, now=time.time() + 3600, idle_after_s=900, timeout_s=30)
        janitor_s = time.perf_counter() - started
        with urllib.request.urlopen(f"{gateway.url}/api/v1/metrics", timeout=10) as response:
            left = len(json.load(response)["data"])
    finally:
        gateway_process.stop()
    result = {
        "series_per_push": series,
        "push_ms": {
            "median": round(statistics.median(took) * 1000, 2),
            "p95": round(percentile(took, 0.95) * 1000, 2),
            "max": round(took[-1] * 1000, 2),
        },
        "janitor": {"groups_retired": retired, "seconds": round(janitor_s, 3), "groups_left": left},
    }
    console.print_json(data=result)
    if json_path:
        json_path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
