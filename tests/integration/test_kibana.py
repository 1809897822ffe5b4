"""Kibana's saved objects (kibana/saved_objects.ndjson) against the real events index.

No Kibana server can run here, so the objects are proven the way Kibana would use them:
every field they name must exist in the engine's real mapping with a type fit for its use,
and every saved search and visualisation is run (query, sort, aggregations) against a real
Elasticsearch node holding changes written by the production consumer.

The changes go to `currency-events-kibana-<run>` (and its rates sibling): the production
index templates match those names, so the mapping is the production one, while USD, which
the saved "One currency's history" search names, stays out of the walkthrough test's indices.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.consumer.indexer import InboundMessage, consume
from currencies_local.synthetic import TableModel
from tests.integration.engines import EngineUnderTest

SAVED_OBJECTS = Path(__file__).resolve().parents[2] / "kibana" / "saved_objects.ndjson"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}
DATES = {"date", "date_nanos"}
# Types Elasticsearch can sort and aggregate on without fielddata (text cannot).
SORTABLE = NUMERIC | DATES | {"keyword", "boolean", "ip"}
ACTIONS = {"insert", "modify", "remove"}
# Kibana picks the "auto" interval from the time range; a fixed one stands in for it here.
AUTO_INTERVAL = "1h"


def load_objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAVED_OBJECTS.read_text().splitlines() if line.strip()]


def of_type(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in load_objects() if obj["type"] == kind]


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def vis_state(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(obj["attributes"]["visState"])


def data_view_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The data view a search or visualisation points at, through its references."""
    name = search_source(obj)["indexRefName"]
    (reference,) = [ref for ref in obj["references"] if ref["name"] == name]
    (view,) = [o for o in load_objects() if o["type"] == reference["type"] and o["id"] == reference["id"]]
    return view


def query_fields(query: str) -> set[str]:
    """Field names a Lucene query string names (`field:value`), quoted phrases left out."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    return set(re.findall(r"(?<![\w.@\\])([A-Za-z_@][\w.@]*)\s*:", unquoted))


def lucene_to_dsl(query: dict[str, Any]) -> dict[str, Any]:
    """What Kibana sends for a Lucene query: match_all when empty, else query_string."""
    assert query["language"] == "lucene"
    text = query["query"]
    if not text.strip():
        return {"match_all": {}}
    return {"query_string": {"query": text, "analyze_wildcard": True}}


def aggregations(state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A visualisation's bucket aggregations nested in their order, as Kibana builds the request."""
    buckets = [agg for agg in state["aggs"] if agg["enabled"] and agg["type"] != "count"]
    assert all(agg["type"] in {"date_histogram", "terms"} for agg in buckets), "teach this test the new agg type"
    request: dict[str, Any] = {}
    level = request
    for agg in buckets:
        params = agg["params"]
        if agg["type"] == "date_histogram":
            interval = AUTO_INTERVAL if params["interval"] == "auto" else params["interval"]
            body = {"field": params["field"], "fixed_interval": interval, "min_doc_count": params["min_doc_count"]}
        else:
            body = {"field": params["field"], "size": params["size"], "order": {"_count": params["order"]}}
        level[agg["id"]] = {agg["type"]: body, "aggs": {}}
        level = level[agg["id"]]["aggs"]
    return request, buckets


# --- the file itself (no engine needed) ---------------------------------------------------


def test_every_line_is_a_saved_object_with_a_unique_id() -> None:
    objects = load_objects()
    for obj in objects:
        assert {"type", "id", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion"} <= set(obj)
    ids = [obj["id"] for obj in objects]
    assert len(ids) == len(set(ids)), Counter(ids).most_common(1)
    titles = [obj["attributes"]["title"] for obj in objects]
    assert len(titles) == len(set(titles))


def test_every_reference_resolves_to_an_object_in_the_file_and_is_used() -> None:
    objects = load_objects()
    present = {(obj["type"], obj["id"]) for obj in objects}
    for obj in objects:
        names = [ref["name"] for ref in obj["references"]]
        assert len(names) == len(set(names)), obj["id"]
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in present, f"{obj['id']}: dangling reference {ref}"
        if obj["type"] in {"search", "visualization"}:
            source = search_source(obj)
            assert "index" not in source, "the data view goes through references, not an inline id"
            assert source["indexRefName"] == INDEX_REF
            assert names == [INDEX_REF], f"{obj['id']}: a reference nothing names"
            assert data_view_of(obj)["type"] == "index-pattern"


def test_the_expected_objects_are_there() -> None:
    (view,) = of_type("index-pattern")
    assert view["attributes"]["timeFieldName"] == "@timestamp"
    searches = {obj["attributes"]["title"]: obj for obj in of_type("search")}
    assert set(searches) == {"All currency changes", "Removals", "One currency's history"}
    assert search_source(searches["Removals"])["query"]["query"] == "event.action:remove"
    assert searches["One currency's history"]["attributes"]["sort"][0][0] == "currency.version"
    for obj in [*of_type("search"), *of_type("visualization")]:
        assert search_source(obj)["query"]["language"] == "lucene", obj["id"]
    (vis,) = of_type("visualization")
    state = vis_state(vis)
    assert state["title"] == vis["attributes"]["title"] == "Changes over time by type"
    assert [(agg["type"], agg["params"].get("field")) for agg in state["aggs"]] == [
        ("count", None),
        ("date_histogram", "@timestamp"),
        ("terms", "event.action"),
    ]


# --- against a real Elasticsearch node ----------------------------------------------------


@dataclass(frozen=True)
class Written:
    """Changes this module wrote (to `index`): event ids by action, and USD's versions."""

    index: str
    ids_by_action: dict[str, set[str]]
    usd_versions: list[int]

    @property
    def ids(self) -> set[str]:
        return set().union(*self.ids_by_action.values())


@pytest.fixture(scope="module")
def es(elasticsearch_url: str) -> EngineUnderTest:
    return EngineUnderTest("elasticsearch", elasticsearch_url)


@pytest.fixture(scope="module")
def written(es: EngineUnderTest) -> Written:
    """Inserts, modifies and removes (USD among them), through the production consumer."""
    other = f"K{uuid.uuid4().hex[:8]}"
    table = TableModel()
    for write in (
        lambda: table.put("USD", Decimal("1.0812")),
        lambda: table.put(other, Decimal("0.9213")),
        lambda: table.put("USD", Decimal("1.0820")),
        lambda: table.delete(other),
        lambda: table.put("USD", Decimal("1.0799")),
    ):
        table.now_ms += 1000  # a second apart: @timestamp has second precision, so the order is visible
        write()
    changes = table.changes()
    run = uuid.uuid4().hex[:8]
    events_index, rates_index = f"{es.events_index}-kibana-{run}", f"{es.rates_index}-kibana-{run}"
    report = consume(
        [InboundMessage(c.id, c.to_json()) for c in changes],
        es.sink,  # its templates are in place; the indices below are created from them on first write
        events_index=events_index,
        rates_index=rates_index,
    )
    assert report.outcomes == {"indexed": len(changes)}, report.outcomes
    es.client.indices.refresh(index=events_index)
    by_action: dict[str, set[str]] = {}
    for change in changes:
        by_action.setdefault(change.type.lower(), set()).add(change.id)
    return Written(events_index, by_action, [c.version for c in changes if c.symbol == "USD"])


def flat_mapping(es: EngineUnderTest, index: str) -> dict[str, str]:
    """Every field of an index (multi-fields included), dotted name -> type."""
    (found,) = es.client.indices.get_mapping(index=index).body.values()
    fields: dict[str, str] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, spec in properties.items():
            path = prefix + name
            if "properties" in spec:
                walk(spec["properties"], path + ".")
            else:
                fields[path] = spec["type"]
            for sub, sub_spec in spec.get("fields", {}).items():
                fields[f"{path}.{sub}"] = sub_spec["type"]

    walk(found["mappings"]["properties"], "")
    return fields


@pytest.fixture(scope="module")
def mapping(es: EngineUnderTest, written: Written) -> dict[str, str]:
    """The data view's index as the production sink sets it up; the written index must equal it."""
    (view,) = of_type("index-pattern")
    production = flat_mapping(es, view["attributes"]["title"])
    assert flat_mapping(es, written.index) == production
    return production


def test_the_data_view_matches_the_events_index_and_its_time_field(
    es: EngineUnderTest, mapping: dict[str, str]
) -> None:
    (view,) = of_type("index-pattern")
    assert view["attributes"]["title"] == es.events_index
    assert mapping[view["attributes"]["timeFieldName"]] in DATES


def test_every_field_a_saved_search_names_exists_with_a_fitting_type(mapping: dict[str, str]) -> None:
    for obj in of_type("search"):
        title = obj["attributes"]["title"]
        for column in obj["attributes"]["columns"]:
            assert column in mapping, f"{title}: column {column} is not in the mapping"
        for field, direction in obj["attributes"]["sort"]:
            assert direction in {"asc", "desc"}
            assert mapping.get(field) in SORTABLE, f"{title}: cannot sort on {field} ({mapping.get(field)})"
        for field in query_fields(search_source(obj)["query"]["query"]):
            assert field in mapping, f"{title}: the query names {field}, which is not in the mapping"


def test_every_field_a_visualisation_names_exists_with_a_fitting_type(mapping: dict[str, str]) -> None:
    for obj in of_type("visualization"):
        for field in query_fields(search_source(obj)["query"]["query"]):
            assert field in mapping
        for agg in vis_state(obj)["aggs"]:
            field = agg["params"].get("field")
            if agg["type"] == "date_histogram":
                assert mapping.get(field) in DATES, f"date_histogram on {field} ({mapping.get(field)})"
            elif field is not None:
                assert mapping.get(field) in SORTABLE, f"{agg['type']} on {field} ({mapping.get(field)})"


def run_search(es: EngineUnderTest, obj: dict[str, Any], index: str) -> list[dict[str, Any]]:
    """The saved search as Discover runs it: its Lucene query and its sort, on `index`."""
    query = lucene_to_dsl(search_source(obj)["query"])
    sort = [{field: {"order": direction}} for field, direction in obj["attributes"]["sort"]]
    return es.client.search(index=index, query=query, sort=sort, size=500)["hits"]["hits"]


def saved_search(title: str) -> dict[str, Any]:
    (obj,) = [obj for obj in of_type("search") if obj["attributes"]["title"] == title]
    return obj


def test_all_changes_finds_every_change_newest_first(es: EngineUnderTest, written: Written) -> None:
    hits = run_search(es, saved_search("All currency changes"), written.index)
    assert {hit["_id"] for hit in hits} == written.ids
    stamps = [hit["_source"]["@timestamp"] for hit in hits]
    assert len(set(stamps)) == len(stamps)
    assert stamps == sorted(stamps, reverse=True)


def test_removals_finds_only_removals(es: EngineUnderTest, written: Written) -> None:
    hits = run_search(es, saved_search("Removals"), written.index)
    assert {hit["_id"] for hit in hits} == written.ids_by_action["remove"]
    assert {hit["_source"]["event"]["action"] for hit in hits} == {"remove"}


def test_one_currency_history_is_that_currency_in_version_order(es: EngineUnderTest, written: Written) -> None:
    hits = run_search(es, saved_search("One currency's history"), written.index)
    assert {hit["_source"]["currency"]["symbol"] for hit in hits} == {"USD"}
    assert [hit["_source"]["currency"]["version"] for hit in hits] == sorted(written.usd_versions)
    assert len(hits) == 3


def test_changes_over_time_by_type_buckets_every_action(es: EngineUnderTest, written: Written) -> None:
    (vis,) = of_type("visualization")
    aggs, (histogram, terms) = aggregations(vis_state(vis))
    # Kibana always adds a range on the data view's time field; this one spans the changes written.
    stamps = [
        hit["_source"]["@timestamp"] for hit in run_search(es, saved_search("All currency changes"), written.index)
    ]
    time_field = data_view_of(vis)["attributes"]["timeFieldName"]
    time_range = {"range": {time_field: {"gte": min(stamps), "lte": max(stamps)}}}
    query = {"bool": {"must": [lucene_to_dsl(search_source(vis)["query"])], "filter": [time_range]}}
    response = es.client.search(index=written.index, query=query, aggs=aggs, size=0)
    buckets = response["aggregations"][histogram["id"]]["buckets"]
    assert buckets
    counts: Counter[str] = Counter()
    for bucket in buckets:
        for split in bucket[terms["id"]]["buckets"]:
            counts[split["key"]] += split["doc_count"]
    assert counts == Counter({action: len(ids) for action, ids in written.ids_by_action.items()})
    assert set(counts) == ACTIONS
