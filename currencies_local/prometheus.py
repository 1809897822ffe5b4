"""A real Prometheus (with the project's rules) and a real Pushgateway, from Debian's packages.

Prometheus runs the project's `prometheus/prometheus.yml`, rewritten only where a
run differs from the defaults: the ports it scrapes, absolute rule paths and,
for tests, shorter intervals. Both binaries come from `make system-deps`.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from currencies_local.processes import ManagedProcess, StartupError, http_status

PROJECT_DIR = Path(__file__).resolve().parent.parent
CONFIG = PROJECT_DIR / "prometheus" / "prometheus.yml"


@dataclass(frozen=True)
class ScrapeTargets:
    """Where this run's services listen ("host:port")."""

    metrics: str
    pushgateway: str
    prometheus: str


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StartupError(f"{name} is not installed; `make system-deps` installs it (Debian package)")
    return path


def config_for(targets: ScrapeTargets, *, interval: str | None = None) -> dict[str, Any]:
    """The project's configuration pointed at this run's ports (and, optionally, scraped more often)."""
    config = yaml.safe_load(CONFIG.read_text())
    wanted = {"currencies": targets.metrics, "pushgateway": targets.pushgateway, "prometheus": targets.prometheus}
    for job in config["scrape_configs"]:
        if job["job_name"] in wanted:
            job["static_configs"] = [{"targets": [wanted[job["job_name"]]]}]
    config["rule_files"] = [str(CONFIG.parent / pattern) for pattern in config.get("rule_files", [])]
    if interval is not None:
        config["global"]["scrape_interval"] = interval
        config["global"]["evaluation_interval"] = interval
        for job in config["scrape_configs"]:
            job.pop("scrape_interval", None)
    return config


def start_prometheus(
    host: str, port: int, work_dir: Path, targets: ScrapeTargets, *, interval: str | None = None
) -> ManagedProcess:
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config_for(targets, interval=interval), sort_keys=False))
    process = ManagedProcess(
        "Prometheus",
        [
            _binary("prometheus"),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={work_dir / 'data'}",
            f"--web.listen-address={host}:{port}",
            "--web.enable-lifecycle",
        ],
        work_dir / "prometheus.log",
    )
    process.wait_until(lambda: http_status(f"http://{host}:{port}/-/ready") == 200, timeout_s=30)
    return process


def start_pushgateway(host: str, port: int, work_dir: Path) -> ManagedProcess:
    # No persistence file: groups live in memory, like a freshly started gateway.
    process = ManagedProcess(
        "Pushgateway",
        [_binary("prometheus-pushgateway"), f"--web.listen-address={host}:{port}", "--persistence.file="],
        work_dir / "pushgateway.log",
    )
    process.wait_until(lambda: http_status(f"http://{host}:{port}/-/ready") == 200, timeout_s=30)
    return process


def wait_for_first_scrape(prometheus_url: str, *, job: str, timeout_s: float) -> None:
    """Return once Prometheus has scraped `job` successfully (raises StartupError after the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{prometheus_url}/api/v1/targets?state=active", timeout=2) as response:
                targets = json.load(response)["data"]["activeTargets"]
        except OSError:
            targets = []
        if any(t["labels"].get("job") == job and t["health"] == "up" for t in targets):
            return
        time.sleep(0.2)
    raise StartupError(f"Prometheus did not scrape the {job!r} job within {timeout_s:.0f} s; see its log")
