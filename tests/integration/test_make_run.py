"""What `make run` promises, checked as a user would: a fresh `currencies up` (its own Elasticsearch
node, Prometheus and Pushgateway), the README's walkthrough with the original curl calls, then
/metrics, the "current rates" panel and Prometheus's answers to the dashboards' queries.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from elasticsearch import Elasticsearch

from currencies_local.processes import free_port, http_status
from grafana.queries import es_search_body, iter_panels, panel_targets, substitute
from tests.integration.observability import PrometheusAPI
from tests.integration.support import eventually

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
WALKTHROUGH = [
    ["-X", "POST", "/currency", "--data", '{"symbol":"USD","rate":"100"}'],
    ["-X", "POST", "/currency", "--data", '{"symbol":"EUR","rate":"999"}'],
    ["-X", "POST", "/currency", "--data", '{"symbol":"EUR","rate":"100"}'],
    ["-X", "DELETE", "/currency/EUR"],
]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    ports = {name: free_port() for name in ("api", "moto", "search", "metrics", "prometheus", "pushgateway")}
    command = [
        sys.executable, "-m", "currencies_local", "up",
        "--api-port", str(ports["api"]), "--moto-port", str(ports["moto"]),
        "--search-port", str(ports["search"]), "--metrics-port", str(ports["metrics"]),
        "--prometheus-port", str(ports["prometheus"]), "--pushgateway-port", str(ports["pushgateway"]),
    ]  # fmt: skip
    lock = tmp_path_factory.mktemp("lock") / "up.lock"
    log = tmp_path_factory.mktemp("make-run") / "up.log"
    # A user's shell: none of the settings other tests' pipelines left in this process's environment.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CURRENCIES_", "AWS_", "ELASTICSEARCH_", "OPENSEARCH_"))
    }
    with log.open("w") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**env, "CURRENCIES_LOCK_FILE": str(lock)}
        )
    api = f"http://127.0.0.1:{ports['api']}/currency"
    eventually(lambda: http_status(api), lambda status: status == 200 or process.poll() is not None, 180)
    assert process.poll() is None, log.read_text()
    yield ports
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()


@pytest.fixture(scope="module")
def walked(up: dict[str, int]) -> dict[str, int]:
    for call in WALKTHROUGH:
        args = [part.replace("/currency", f"http://127.0.0.1:{up['api']}/currency", 1) for part in call]
        subprocess.run(["curl", "-sS", "--fail", *args], check=True, capture_output=True, timeout=30)
    return up


def test_metrics_show_usd_and_not_eur(walked: dict[str, int]) -> None:
    def metrics() -> str:
        return requests.get(f"http://127.0.0.1:{walked['metrics']}/metrics", timeout=5).text

    text = eventually(metrics, lambda text: 'currencies_consumer_messages_total{outcome="indexed"} 4.0' in text)
    assert 'currencies_currency_rate{symbol="USD"} 100.0' in text
    assert 'symbol="EUR"' not in text


def test_the_current_rates_panel_returns_usd_only(walked: dict[str, int]) -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "currencies-overview.json").read_text())
    [panel] = [p for p in iter_panels(dashboard) if p.get("title") == "Current rate of every currency"]
    [target] = [t for t in panel_targets(dashboard) if t.panel_title == panel["title"]]
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    [source] = [s for s in provisioned["datasources"] if s["uid"] == target.datasource_uid]
    now_ms = int(time.time() * 1000)
    body = es_search_body(
        target.target,
        time_from_ms=now_ms - 10 * 365 * 86400 * 1000,
        time_to_ms=now_ms,
        time_field=source["jsonData"]["timeField"],
    )
    client = Elasticsearch(f"http://127.0.0.1:{walked['search']}", request_timeout=30)

    def symbols() -> list[str]:
        client.indices.refresh(index=source["jsonData"]["index"])
        hits = client.search(index=source["jsonData"]["index"], body=body)["hits"]["hits"]
        return sorted(hit["_source"]["currency"]["symbol"] for hit in hits)

    assert eventually(symbols, lambda found: found == ["USD"]) == ["USD"]


def test_prometheus_answers_the_dashboards_queries(walked: dict[str, int]) -> None:
    prometheus = PrometheusAPI(f"http://127.0.0.1:{walked['prometheus']}")
    changes = 'sum by (event_type) (increase(currencies_stream_records_total{outcome="published"}[5m]))'
    published = eventually(
        lambda: {s["metric"]["event_type"]: float(s["value"][1]) for s in prometheus.query(changes)},
        lambda found: found.get("INSERT", 0) >= 2 and found.get("REMOVE", 0) >= 1,
        60,
    )
    assert published.get("INSERT", 0) >= 2, published  # increase() extrapolates: at least, not exactly
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        for target in panel_targets(json.loads(path.read_text())):
            if target.datasource_uid == "prometheus":
                prometheus.query(substitute(target.target["expr"], {"symbol": "USD"}))  # raises on any error
