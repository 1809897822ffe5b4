"""The Grafana dashboards: generated, schema-valid, and every query one that can work.

No Grafana server can run here, so these tests are the dashboards' linter: the committed JSON is
the generator's output; it validates against Grafana 11.6's dashboard schema; every panel has a
title, a unit, a provisioned datasource and targets with refIds; Prometheus counters are read only
through rate()/increase() over `$__rate_interval` and summed across instances; every metric a panel
names exists (and every metric we emit is shown or deliberately hidden); every PromQL expression
parses (promtool); every Elasticsearch target translates into a `_search` body.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from chalicelib.observability.metrics import REGISTRY
from currencies_ops.metrics import OperationMetrics
from grafana import dashboards as generator
from grafana import queries
from grafana.queries import PanelTarget, Selector

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "grafana/schema/dashboard.schema.json").read_text())
DATASOURCES_YML = ROOT / "grafana/provisioning/datasources/datasources.yml"
RULES_DIR = ROOT / "prometheus/rules"

# Metrics the registry exposes that no panel shows, and why.
HIDDEN = {"currencies_currency_rate": "per process; dashboards read the current-state index"}

COUNTER_SUFFIXES = ("_total", "_bucket", "_count", "_sum")
AGGREGATIONS = {"sum", "max", "min", "avg", "count", "topk", "bottomk", "quantile", "group"}
RATE_INTERVAL = "[$__rate_interval]"
METRIC = re.compile(r"\bcurrencies_[a-z0-9_]+\b")
RECORDING_RULE = re.compile(r"\bcurrencies:[a-zA-Z0-9_:]+")
TEST_VARIABLES = {"symbol": "EUR"}


def load(name: str) -> dict[str, Any]:
    return json.loads((generator.OUT_DIR / name).read_text())


DASHBOARDS = {name: load(name) for name in generator.DASHBOARDS}


def datasources() -> dict[str, dict[str, Any]]:
    """Provisioned datasources by uid."""
    config = yaml.safe_load(DATASOURCES_YML.read_text())
    return {ds["uid"]: ds for ds in config["datasources"]}


def all_targets() -> list[PanelTarget]:
    return [t for board in DASHBOARDS.values() for t in queries.panel_targets(board)]


def prometheus_targets() -> list[PanelTarget]:
    kinds = {uid: ds["type"] for uid, ds in datasources().items()}
    return [t for t in all_targets() if kinds.get(t.datasource_uid) == "prometheus"]


def elasticsearch_targets() -> list[PanelTarget]:
    kinds = {uid: ds["type"] for uid, ds in datasources().items()}
    return [t for t in all_targets() if kinds.get(t.datasource_uid) == "elasticsearch"]


def exposed_names() -> dict[str, str]:
    """Series name as Prometheus stores it -> registry family name."""
    names = {}
    operations = OperationMetrics("verify", None).registry  # the operator commands' own families
    for family in [*REGISTRY.collect(), *operations.collect()]:
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        for suffix in suffixes:
            names[family.name + suffix] = family.name
    return names


def counter_violations(expr: str) -> list[str]:
    """Counter series read other than directly inside rate()/increase() over `$__rate_interval`."""
    problems = []
    for selector in queries.promql_selectors(expr):
        if not selector.name.endswith(COUNTER_SUFFIXES):
            continue
        if not selector.calls or selector.calls[-1] not in ("rate", "increase"):
            problems.append(f"{selector.name} outside rate()/increase()")
        elif selector.range != RATE_INTERVAL:
            problems.append(f"{selector.name} over {selector.range or 'no range'}, not {RATE_INTERVAL}")
    return problems


def unaggregated(expr: str) -> list[str]:
    """`currencies_*` series not inside any aggregation (which would show one line per container)."""
    return [
        s.name
        for s in queries.promql_selectors(expr)
        if s.name.startswith("currencies_") and not AGGREGATIONS.intersection(s.calls)
    ]


# --- generated, schema-valid -------------------------------------------------------------


def test_committed_json_is_the_generators_output() -> None:
    rendered = generator.render()
    assert set(rendered) == {p.name for p in generator.OUT_DIR.glob("*.json")}
    for name, text in rendered.items():
        assert (generator.OUT_DIR / name).read_text() == text, f"{name}: run .venv/bin/python grafana/dashboards.py"


def test_check_mode_fails_on_a_hand_edited_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in generator.DASHBOARDS:
        shutil.copy(generator.OUT_DIR / name, tmp_path / name)
    monkeypatch.setattr(generator, "OUT_DIR", tmp_path)
    assert generator.main(["--check"]) == 0
    edited = tmp_path / f"{generator.OVERVIEW_UID}.json"
    edited.write_text(edited.read_text().replace('"Consumer outcomes"', '"Consumer outcome"'))
    assert generator.main(["--check"]) == 1


def test_dashboard_uids_are_fixed() -> None:
    assert {board["uid"] for board in DASHBOARDS.values()} == {generator.OVERVIEW_UID, generator.CURRENCY_UID}
    for name, board in DASHBOARDS.items():
        assert name == f"{board['uid']}.json"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_validates_against_grafana_schema(name: str) -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(DASHBOARDS[name])
    ]
    assert errors == []


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda board: next(p for p in board["panels"] if p["type"] != "row")["gridPos"].update(w="12"),
            id="gridPos.w string",
        ),
        pytest.param(lambda board: board.pop("schemaVersion"), id="no schemaVersion"),
        pytest.param(lambda board: board["panels"][0].update(colour="red"), id="unknown row property"),
    ],
)
def test_schema_validation_bites(mutate: Any) -> None:
    board = copy.deepcopy(DASHBOARDS[f"{generator.OVERVIEW_UID}.json"])
    mutate(board)
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(board))


def test_schema_reaches_panels_inside_collapsed_rows() -> None:
    board = copy.deepcopy(DASHBOARDS[f"{generator.OVERVIEW_UID}.json"])
    collapsed = next(p for p in board["panels"] if p["type"] == "row" and p["panels"])
    collapsed["panels"][0]["gridPos"]["h"] = "8"
    assert list(jsonschema.Draft7Validator(SCHEMA).iter_errors(board))


# --- panel lint --------------------------------------------------------------------------


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in queries.iter_panels(board) if p["type"] != "row"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panel_ids_are_unique(name: str) -> None:
    ids = [p["id"] for p in queries.iter_panels(DASHBOARDS[name])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_panel_is_complete(name: str) -> None:
    provisioned = datasources()
    for panel in panels(DASHBOARDS[name]):
        where = f"{name}: {panel.get('title')!r}"
        assert panel.get("title"), where
        assert panel.get("description"), where
        assert panel.get("fieldConfig", {}).get("defaults", {}).get("unit"), f"{where}: no unit"
        source = panel.get("datasource") or {}
        assert source.get("uid") in provisioned, f"{where}: datasource {source} is not provisioned"
        assert source.get("type") == provisioned[source["uid"]]["type"], where
        targets = panel.get("targets") or []
        assert targets, f"{where}: no target"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids), f"{where}: a target has no refId"
        assert len(ref_ids) == len(set(ref_ids)), f"{where}: refIds {ref_ids} repeat"
        for target in targets:
            assert (target.get("datasource") or source) == source, f"{where}: target datasource differs"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_fit_the_grid_without_overlap(name: str) -> None:
    top_level = DASHBOARDS[name]["panels"]
    boxes = []
    for panel in top_level:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel.get("title")
        assert pos["x"] + pos["w"] <= 24, panel.get("title")
        assert pos["h"] > 0, panel.get("title")
        boxes.append((pos["x"], pos["y"], pos["x"] + pos["w"], pos["y"] + pos["h"], panel.get("title")))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"{a[4]!r} overlaps {b[4]!r}"


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_template_variables_used_are_declared(name: str) -> None:
    board = DASHBOARDS[name]
    declared = {v["name"] for v in board.get("templating", {}).get("list", [])}
    used = set()
    for panel in queries.iter_panels(board):
        used |= queries.variable_names(panel.get("title", ""))
        for target in panel.get("targets", []):
            for key in ("expr", "query", "alias", "legendFormat"):
                used |= queries.variable_names(target.get(key) or "")
    assert {n for n in used if not n.startswith("__")} <= declared


def test_currency_dashboard_declares_symbol_on_the_rates_index() -> None:
    board = DASHBOARDS[f"{generator.CURRENCY_UID}.json"]
    (symbol,) = board["templating"]["list"]
    assert symbol["name"] == "symbol"
    assert symbol["type"] == "query"
    assert symbol["datasource"]["uid"] == "currency-rates"
    assert json.loads(symbol["query"]) == {"find": "terms", "field": "currency.symbol", "size": 500}
    for target in queries.panel_targets(board):
        if target.datasource_uid != "prometheus":
            assert "currency.symbol:$symbol" in target.target["query"], target.panel_title


# --- Prometheus --------------------------------------------------------------------------


def test_there_are_prometheus_targets() -> None:
    assert len(prometheus_targets()) >= 20


@pytest.mark.parametrize(
    "target", prometheus_targets(), ids=lambda t: f"{t.dashboard_uid}:{t.panel_title}:{t.target['refId']}"
)
def test_counters_only_inside_rate_over_rate_interval(target: PanelTarget) -> None:
    assert counter_violations(target.target["expr"]) == []


@pytest.mark.parametrize(
    "target", prometheus_targets(), ids=lambda t: f"{t.dashboard_uid}:{t.panel_title}:{t.target['refId']}"
)
def test_series_are_aggregated_across_instances(target: PanelTarget) -> None:
    assert unaggregated(target.target["expr"]) == []


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(currencies_api_requests_total)", "outside rate"),
        ("sum(rate(currencies_api_requests_total[5m]))", "over [5m]"),
        ("histogram_quantile(0.9, currencies_api_request_duration_seconds_bucket)", "outside rate"),
        ("rate(sum(currencies_api_requests_total)[$__rate_interval:])", "outside rate"),
        ("sum(rate(currencies_end_to_end_lag_seconds_count[$__rate_interval])) / sum(currencies_x_sum)", "outside"),
    ],
)
def test_counter_check_catches_misuse(expr: str, problem: str) -> None:
    assert any(problem in p for p in counter_violations(expr))


def test_aggregation_check_catches_a_single_series() -> None:
    assert unaggregated('rate(currencies_api_requests_total{route="/"}[$__rate_interval])') == [
        "currencies_api_requests_total"
    ]
    assert unaggregated("histogram_quantile(0.5, sum by (le) (rate(currencies_x_bucket[$__rate_interval])))") == []


def test_every_panel_metric_is_in_the_registry_and_every_registry_metric_is_shown() -> None:
    exposed = exposed_names()
    used = {m for t in prometheus_targets() for m in METRIC.findall(t.target["expr"])}
    assert used - set(exposed) == set(), "panels name metrics the registry does not expose"
    shown_families = {exposed[m] for m in used}
    families = set(exposed.values())
    assert set(HIDDEN) <= families, "HIDDEN names a metric the registry does not have"
    assert shown_families & set(HIDDEN) == set(), "a hidden metric is on a panel"
    assert families - shown_families - set(HIDDEN) == set(), "metrics neither on a panel nor in HIDDEN"


def recording_rules() -> set[str]:
    names = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names |= {rule["record"] for rule in group.get("rules", []) if "record" in rule}
    return names


def test_recording_rules_used_are_defined() -> None:
    used = {r for t in prometheus_targets() for r in RECORDING_RULE.findall(t.target["expr"])}
    assert used, "the SLO panels read recording rules"
    defined = recording_rules()
    if not defined:
        pytest.skip(f"no recording rules in {RULES_DIR} yet")
    assert used - defined == set()


def promtool_check(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on a file holding each expression as a recording rule."""
    rules = [{"record": f"dashboard:check_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    return subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_every_promql_expression_parses(tmp_path: Path) -> None:
    exprs = [queries.substitute(t.target["expr"], TEST_VARIABLES) for t in prometheus_targets()]
    result = promtool_check(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(exprs)} rules found" in result.stdout


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_promtool_check_rejects_a_broken_expression(tmp_path: Path) -> None:
    result = promtool_check(["sum(rate(currencies_api_requests_total[1m])"], tmp_path)
    assert result.returncode != 0


# --- Elasticsearch -----------------------------------------------------------------------


@pytest.mark.parametrize("target", elasticsearch_targets(), ids=lambda t: f"{t.dashboard_uid}:{t.panel_title}")
def test_elasticsearch_targets_are_lucene_on_the_provisioned_time_field(target: PanelTarget) -> None:
    provisioned = datasources()[target.datasource_uid]["jsonData"]
    assert target.target["timeField"] == provisioned["timeField"]
    assert isinstance(target.target.get("query"), str)
    assert target.target["query"].strip()
    assert target.target.get("queryType", "lucene") == "lucene"
    ids = [a["id"] for a in target.target["metrics"] + target.target.get("bucketAggs", [])]
    assert len(ids) == len(set(ids))
    body = queries.es_search_body(
        target.target,
        time_from_ms=1_700_000_000_000,
        time_to_ms=1_700_003_600_000,
        time_field=provisioned["timeField"],
        variables=TEST_VARIABLES,
    )
    assert "$" not in json.dumps(body)


def test_elasticsearch_targets_cover_both_indices() -> None:
    assert {t.datasource_uid for t in elasticsearch_targets()} == {"currency-events", "currency-rates"}


# --- grafana.queries on hand-written input -----------------------------------------------

HAND_WRITTEN = {
    "uid": "d1",
    "panels": [
        {"type": "row", "id": 1, "panels": []},
        {
            "type": "timeseries",
            "id": 2,
            "title": "top",
            "datasource": {"type": "prometheus", "uid": "prom"},
            "targets": [{"refId": "A", "expr": "up"}, {"refId": "B", "expr": "up", "datasource": {"uid": "other"}}],
        },
        {
            "type": "row",
            "id": 3,
            "collapsed": True,
            "panels": [
                {"type": "table", "id": 4, "title": "nested", "datasource": {"uid": "es"}, "targets": [{"refId": "A"}]}
            ],
        },
    ],
}


def test_panel_targets_includes_rows_nested_panels_and_target_datasources() -> None:
    found = [
        (t.dashboard_uid, t.panel_title, t.datasource_uid, t.target["refId"])
        for t in queries.panel_targets(HAND_WRITTEN)
    ]
    assert found == [("d1", "top", "prom", "A"), ("d1", "top", "other", "B"), ("d1", "nested", "es", "A")]


def test_substitute_builtins_and_template_variables() -> None:
    expr = "rate(x[$__rate_interval]) $__interval ${__range} [[symbol]] ${symbol:lucene} $symbol"
    assert queries.substitute(expr, {"symbol": "EUR", "__interval": "30s"}) == "rate(x[1m]) 30s 1h EUR EUR EUR"
    with pytest.raises(KeyError, match="nope"):
        queries.substitute("a:$nope")
    assert queries.variable_names("a:$x b:${y} c:[[z]] $__range") == {"x", "y", "z", "__range"}


def test_es_body_for_raw_documents_is_newest_first_with_the_time_range() -> None:
    target = {
        "query": "currency.symbol:$symbol",
        "metrics": [{"id": "1", "type": "raw_data", "settings": {"size": "7"}}],
    }
    body = queries.es_search_body(
        target, time_from_ms=1, time_to_ms=2, time_field="@timestamp", variables={"symbol": "EUR"}
    )
    assert body == {
        "size": 7,
        "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}, {"_doc": {"order": "desc"}}],
        "query": {
            "bool": {
                "filter": [
                    {"range": {"@timestamp": {"gte": 1, "lte": 2, "format": "epoch_millis"}}},
                    {"query_string": {"analyze_wildcard": True, "query": "currency.symbol:EUR"}},
                ]
            }
        },
    }


def test_es_body_nests_bucket_aggregations_in_order_with_metrics_innermost() -> None:
    target = {
        "query": "",
        "metrics": [{"id": "1", "type": "max", "field": "currency.rate"}, {"id": "4", "type": "count"}],
        "bucketAggs": [
            {
                "id": "2",
                "type": "terms",
                "field": "currency.symbol",
                "settings": {"size": "0", "orderBy": "_term", "order": "asc"},
            },
            {"id": "3", "type": "date_histogram", "field": "@timestamp", "settings": {"interval": "auto"}},
        ],
    }
    body = queries.es_search_body(
        target, time_from_ms=10, time_to_ms=20, time_field="ts", variables={"__interval": "30s"}
    )
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"][1]["query_string"]["query"] == "*"
    terms = body["aggs"]["2"]
    assert terms["terms"] == {"field": "currency.symbol", "size": 500, "order": {"_key": "asc"}, "min_doc_count": 1}
    histogram = terms["aggs"]["3"]
    assert histogram["date_histogram"] == {
        "field": "@timestamp",
        "min_doc_count": 0,
        "extended_bounds": {"min": 10, "max": 20},
        "format": "epoch_millis",
        "fixed_interval": "30s",
    }
    assert histogram["aggs"] == {"1": {"max": {"field": "currency.rate"}}}


def test_es_body_orders_terms_by_a_metric_and_rejects_what_it_cannot_translate() -> None:
    target = {
        "query": "*",
        "metrics": [{"id": "5", "type": "avg", "field": "x"}],
        "bucketAggs": [{"id": "2", "type": "terms", "field": "k", "settings": {"orderBy": "5", "size": "3"}}],
    }
    body = queries.es_search_body(target, time_from_ms=0, time_to_ms=1, time_field="t")
    assert body["aggs"]["2"]["terms"]["order"] == {"5": "desc"}
    assert body["aggs"]["2"]["aggs"] == {"5": {"avg": {"field": "x"}}}
    target["bucketAggs"][0]["settings"]["orderBy"] = "9"
    with pytest.raises(ValueError, match="names no metric"):
        queries.es_search_body(target, time_from_ms=0, time_to_ms=1, time_field="t")
    with pytest.raises(NotImplementedError):
        queries.es_search_body(
            {"metrics": [{"id": "1", "type": "moving_avg"}]}, time_from_ms=0, time_to_ms=1, time_field="t"
        )


def test_promql_selectors_see_calls_ranges_and_skip_label_lists() -> None:
    expr = 'histogram_quantile(0.99, sum by (stage, le) (rate(a_bucket{le=~"5|5\\\\.0"}[$__rate_interval]))) / b:rule'
    assert queries.promql_selectors(expr) == [
        Selector("a_bucket", "[$__rate_interval]", ("histogram_quantile", "sum", "rate")),
        Selector("b:rule", "", ()),
    ]
    with pytest.raises(ValueError, match="unbalanced"):
        queries.promql_selectors("sum(rate(x[1m])")


def test_dashboard_provider_loads_the_mounted_directory() -> None:
    config = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
