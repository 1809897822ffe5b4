"""`currencies up` as a user runs it: a real process, its endpoints, a second start, Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from currencies_local.processes import free_port, http_status, port_is_free
from tests.integration.engines import EngineUnderTest
from tests.integration.observability import PrometheusAPI
from tests.integration.support import eventually

CLI = [sys.executable, "-m", "currencies_local"]


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {name: free_port() for name in ("api", "moto", "metrics", "prometheus", "pushgateway")}


@pytest.fixture(scope="module")
def command(ports: dict[str, int], engine: EngineUnderTest) -> list[str]:
    return [
        *CLI, "up",
        "--api-port", str(ports["api"]),
        "--moto-port", str(ports["moto"]),
        "--metrics-port", str(ports["metrics"]),
        "--prometheus-port", str(ports["prometheus"]),
        "--pushgateway-port", str(ports["pushgateway"]),
        "--engine", engine.name,
        "--search-url", engine.url,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    lock = tmp_path_factory.mktemp("lock") / "up.lock"
    return {**os.environ, "CURRENCIES_LOCK_FILE": str(lock), "COLUMNS": "200"}


@pytest.fixture(scope="module")
def running(command: list[str], env: dict[str, str], ports: dict[str, int], tmp_path_factory) -> Iterator[tuple]:
    output = tmp_path_factory.mktemp("cli") / "up.log"
    with output.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    api = f"http://127.0.0.1:{ports['api']}/currency"
    eventually(lambda: http_status(api), lambda status: status == 200 or process.poll() is not None, 120)
    yield process, output
    if process.poll() is None:
        process.kill()
        process.wait()


def test_help_is_on_every_command() -> None:
    for args in ([], ["up"]):
        result = subprocess.run([*CLI, *args, "--help"], check=True, capture_output=True, text=True)
        assert "Usage:" in result.stdout
    assert "--api-port" in result.stdout


def test_up_serves_the_api_and_metrics(running: tuple, ports: dict[str, int], engine: EngineUnderTest) -> None:
    process, output = running
    assert process.poll() is None, Path(output).read_text()
    created = requests.post(f"http://127.0.0.1:{ports['api']}/currency", data='{"symbol":"PLN","rate":"4.3"}')
    assert created.status_code == 201
    metrics = requests.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5).text
    assert 'currencies_api_requests_total{method="POST",route="/currency",status_class="2xx"} 1.0' in metrics
    indexed = eventually(
        lambda: requests.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=5).text,
        lambda text: 'currencies_consumer_messages_total{outcome="indexed"} 1.0' in text,
    )
    assert 'currencies_consumer_messages_total{outcome="indexed"} 1.0' in indexed
    log = Path(output).read_text()
    assert f"http://127.0.0.1:{ports['api']}/currency" in log
    assert engine.url in log
    assert f"http://127.0.0.1:{ports['prometheus']}" in log


def test_up_starts_prometheus_scraping_the_pipeline(running: tuple, ports: dict[str, int]) -> None:
    prometheus = PrometheusAPI(f"http://127.0.0.1:{ports['prometheus']}")
    targets = eventually(
        prometheus.targets_up, lambda up: up == {"currencies": True, "pushgateway": True, "prometheus": True}, 40
    )
    assert targets == {"currencies": True, "pushgateway": True, "prometheus": True}
    rules = requests.get(f"http://127.0.0.1:{ports['prometheus']}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert any(rule["type"] == "alerting" for group in rules for rule in group["rules"])


def test_a_second_up_says_one_is_running(running: tuple, command: list[str], env: dict[str, str]) -> None:
    second = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 1
    assert "already running" in second.stdout
    assert f"pid {running[0].pid}" in second.stdout


def test_sigterm_stops_everything(running: tuple, ports: dict[str, int]) -> None:
    process, output = running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert "stopped." in Path(output).read_text()
    assert all(port_is_free("127.0.0.1", port) for port in ports.values())
