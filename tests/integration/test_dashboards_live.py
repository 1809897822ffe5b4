"""Every dashboard query is proven on real services: a panel that shows nothing fails the build.

Traffic goes through the local pipeline (API, stream, SNS, SQS, consumer, the real engine),
including the failures the error panels exist for. Then every PromQL expression of every
panel (Grafana's variables substituted) runs on the pipeline's real Prometheus, which
loads the project's config and rules, and every Elasticsearch panel's query, translated
to the search body Grafana sends, runs on the real engine. Each must return data.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import yaml
from click.testing import CliRunner

from chalicelib.observability.pushgateway import Pushgateway
from currencies_local.cli import main as cli_main
from currencies_local.pipeline import LocalPipeline
from grafana.queries import PanelTarget, es_search_body, iter_panels, panel_targets, substitute
from tests.integration.conftest import Observability
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SYMBOL = "GRF"
# Grafana's variables for a 1 s scrape interval (as the test Prometheus runs): $__rate_interval
# is at least four scrape intervals.
VARIABLES = {"__rate_interval": "20s", "__interval": "5s", "__range": "5m", "symbol": SYMBOL}
_DURATION = re.compile(r"^(?:now-)?(\d+)([smhdwy])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def datasources() -> dict[str, dict[str, Any]]:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    return {source["uid"]: source for source in provisioned["datasources"]}


def seconds(text: str) -> int:
    match = _DURATION.match(text)
    assert match, f"unsupported relative time {text!r}"
    return int(match[1]) * _SECONDS[match[2]]


# Grafana picks $__interval as the time range over the panel's data points (about 1,000),
# rounded to one of these steps.
_NICE_INTERVALS = [
    (text, seconds(text))
    for text in ("1s", "5s", "10s", "20s", "30s", "1m", "5m", "10m", "15m", "30m", "1h", "3h", "12h", "1d")
]


def window_ms(dashboard: dict[str, Any], panel: dict[str, Any]) -> tuple[int, int]:
    """The time range Grafana queries for a panel: the panel's own `timeFrom`, else the dashboard's."""
    now_ms = int(time.time() * 1000)
    span = seconds(panel["timeFrom"]) if panel.get("timeFrom") else seconds(dashboard["time"]["from"])
    return now_ms - span * 1000, now_ms


def grafana_interval(span_s: float, data_points: int = 1000) -> str:
    wanted = span_s / data_points
    return next((name for name, step in _NICE_INTERVALS if step >= wanted), _NICE_INTERVALS[-1][0])


@pytest.fixture(scope="module")
def refused_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def traffic(
    pipeline: LocalPipeline, observability: Observability, search: EngineUnderTest, refused_id: str
) -> Iterator[None]:
    """Changes of every kind, and each failure a panel watches for."""
    api = pipeline.api_url
    assert requests.post(f"{api}/currency", data=f'{{"symbol":"{SYMBOL}","rate":"1.5"}}', timeout=10).ok
    assert requests.put(f"{api}/currency/{SYMBOL}", data='{"rate":"1.6"}', timeout=10).ok
    assert requests.post(f"{api}/currency", data='{"symbol":"GRD","rate":"2"}', timeout=10).ok
    assert requests.delete(f"{api}/currency/GRD", timeout=10).ok
    assert requests.post(f"{api}/currency", data='{"symbol":"GRF"}', timeout=10).status_code == 400
    assert requests.get(f"{api}/currency/ZZQ", timeout=10).status_code == 404
    assert pipeline.resources is not None
    # An item another writer left without a rate: the stream handler dead-letters its record.
    boto3.client("dynamodb").put_item(
        TableName=pipeline.resources.table_name, Item={"symbol": {"S": "GRX"}, "note": {"S": "foreign"}}
    )
    # ... which the API's listing skips (and counts) rather than failing for everyone.
    listed = requests.get(f"{api}/currency", timeout=10)
    assert listed.status_code == 200
    assert "GRX" not in {rate["symbol"] for rate in listed.json()["currencies"]}
    # A change the engine refuses (a rate beyond a double's range): a bulk item error, retried, then dead-lettered.
    refused = {
        "schema": "currencies.change.v1",
        "type": "INSERT",
        "data": {"symbol": "GRZ", "rate": "1e400"},
        "id": refused_id,
        "sequence": "1",
        "version": 1,
        "occurred_at": "2026-11-27T00:00:00.000Z",
        "published_at": "2026-11-27T00:00:00.000Z",
        "old": None,
        "new": None,
    }
    boto3.client("sqs").send_message(QueueUrl=pipeline.resources.queue_url, MessageBody=json.dumps(refused))
    eventually(lambda: search.rates_for([SYMBOL]), lambda rates: rates == {SYMBOL: "1.6"})
    # An operator command's run, pushed to the Pushgateway as on AWS.
    environment = {**pipeline.environment, "CURRENCIES_PUSHGATEWAY_URL": observability.pushgateway_url}
    checked = CliRunner().invoke(cli_main, ["verify", "--json", f"--symbol={SYMBOL}"], env=environment)
    assert checked.exit_code == 0, checked.output
    errors = eventually(
        lambda: observability.prometheus.query("sum(currencies_bulk_item_errors_total)"),
        lambda found: bool(found) and float(found[0]["value"][1]) > 0,
        30,
    )
    assert errors, "the refused change produced no bulk item error"
    yield
    # The operator run's group would otherwise be one more group for other tests' janitor runs.
    gateway = Pushgateway(observability.pushgateway_url)
    for group in gateway.groups(5):
        if group.labels.get("function") == "currencies-verify":
            gateway.delete(group.key, 5)


def prometheus_targets() -> list[tuple[str, PanelTarget]]:
    found = []
    for path in DASHBOARDS:
        for target in panel_targets(json.loads(path.read_text())):
            if target.datasource_uid == "prometheus":
                found.append((f"{target.dashboard_uid}: {target.panel_title} [{target.target['refId']}]", target))
    return found


def search_panels() -> list[tuple[str, dict[str, Any], dict[str, Any], PanelTarget]]:
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        panels = {panel.get("title"): panel for panel in iter_panels(dashboard)}
        for target in panel_targets(dashboard):
            if target.datasource_uid != "prometheus":
                name = f"{target.dashboard_uid}: {target.panel_title} [{target.target['refId']}]"
                found.append((name, dashboard, panels[target.panel_title], target))
    return found


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(("name", "target"), prometheus_targets(), ids=[name for name, _ in prometheus_targets()])
def test_every_promql_panel_returns_data(name: str, target: PanelTarget, observability: Observability) -> None:
    expr = substitute(target.target["expr"], VARIABLES)

    def series() -> list[dict[str, Any]]:
        now = time.time()
        result = observability.prometheus.query_range(expr, now - 120, now, 2)
        return [s for s in result if any(value not in ("NaN", "+Inf", "-Inf") for _, value in s["values"])]

    assert eventually(series, bool, 30), f"{name}: {expr} returned no data"


def grafana_search(
    dashboard: dict[str, Any], panel: dict[str, Any], target: PanelTarget, symbol: str = SYMBOL
) -> tuple[str, dict[str, Any]]:
    """The index and search body Grafana sends for a panel's target, with `$symbol` = `symbol`."""
    source = datasources()[target.datasource_uid]
    time_from_ms, time_to_ms = window_ms(dashboard, panel)
    interval = grafana_interval((time_to_ms - time_from_ms) / 1000)
    body = es_search_body(
        target.target,
        time_from_ms=time_from_ms,
        time_to_ms=time_to_ms,
        time_field=source["jsonData"]["timeField"],
        variables={**VARIABLES, "__interval": interval, "symbol": symbol},
    )
    return source["jsonData"]["index"], body


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(
    ("name", "dashboard", "panel", "target"), search_panels(), ids=[name for name, *_ in search_panels()]
)
def test_every_search_panel_returns_hits(
    name: str, dashboard: dict[str, Any], panel: dict[str, Any], target: PanelTarget, search: EngineUnderTest
) -> None:
    index, body = grafana_search(dashboard, panel, target)
    search.client.indices.refresh(index=index)
    response = search.client.search(index=index, body=body)
    if body["size"]:
        assert response["hits"]["hits"], f"{name}: no documents for {json.dumps(body)}"
        if "$symbol" in (target.target.get("query") or ""):
            assert {hit["_source"]["currency"]["symbol"] for hit in response["hits"]["hits"]} == {SYMBOL}
    else:
        assert _has_buckets(response["aggregations"]), f"{name}: no buckets for {json.dumps(body)}"


def test_the_symbol_variable_lists_written_symbols(traffic: None, search: EngineUnderTest) -> None:
    dashboard = json.loads((GRAFANA / "dashboards" / "currencies-currency.json").read_text())
    [variable] = dashboard["templating"]["list"]
    query = json.loads(variable["query"])
    assert query["find"] == "terms"
    index = datasources()[variable["datasource"]["uid"]]["jsonData"]["index"]
    body = {"size": 0, "aggs": {"values": {"terms": {"field": query["field"], "size": query.get("size", 500)}}}}
    search.client.indices.refresh(index=index)
    buckets = search.client.search(index=index, body=body)["aggregations"]["values"]["buckets"]
    symbols = {bucket["key"] for bucket in buckets}
    assert SYMBOL in symbols
    assert "GRD" in symbols  # removed, and still listed: its history stays one click away


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(
    ("name", "dashboard", "panel", "target"),
    [found for found in search_panels() if found[3].datasource_uid == "currency-rates"],
    ids=[name for name, _, _, target in search_panels() if target.datasource_uid == "currency-rates"],
)
def test_current_rate_panels_leave_out_a_removed_symbol(
    name: str, dashboard: dict[str, Any], panel: dict[str, Any], target: PanelTarget, search: EngineUnderTest
) -> None:
    """GRD was created then removed: its deletion marker stays in the rates index, and no panel shows it."""
    index, body = grafana_search(dashboard, panel, target, symbol="GRD")
    marker = eventually(
        lambda: search.client.get(index=index, id="GRD")["_source"]["currency"], lambda c: "deleted" in c
    )
    assert marker["deleted"] is True
    search.client.indices.refresh(index=index)
    hits = search.client.search(index=index, body={**body, "size": 1000})["hits"]["hits"]
    assert "GRD" not in {hit["_source"]["currency"]["symbol"] for hit in hits}, name


@pytest.mark.usefixtures("traffic")
def test_the_refused_change_is_dead_lettered_with_its_reason(refused_id: str, pipeline: LocalPipeline) -> None:
    """The refused change ends in the DLQ with the engine's reason (and is removed from it afterwards)."""
    assert pipeline.resources is not None
    sqs = boto3.client("sqs")

    def find() -> list[dict[str, Any]]:
        received = sqs.receive_message(
            QueueUrl=pipeline.resources.dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=1,
        ).get("Messages", [])
        return [message for message in received if refused_id in message["Body"]]

    # Five receives, five seconds apart (the local queue's redrive policy and visibility timeout).
    [letter] = eventually(find, bool, 90)
    reason = letter["MessageAttributes"]["reason"]["StringValue"]
    assert "currency-rates" in reason or "currency-events" in reason
    sqs.delete_message(QueueUrl=pipeline.resources.dlq_url, ReceiptHandle=letter["ReceiptHandle"])


def _has_buckets(aggregations: dict[str, Any]) -> bool:
    """Some bucket, at any depth, holds documents."""
    for aggregation in aggregations.values():
        if not isinstance(aggregation, dict):
            continue
        for bucket in aggregation.get("buckets", []):
            if bucket.get("doc_count", 0) > 0:
                return True
    return False
