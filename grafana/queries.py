"""Pure helpers that read dashboard JSON the way Grafana would, for the tests.

- `panel_targets`: every query of a dashboard, with its panel and datasource;
- `substitute`: Grafana's variable interpolation (`$__rate_interval`, `${symbol}`, ...);
- `es_search_body`: the `_search` body Grafana's Elasticsearch datasource sends for a target, so a
  test can run a panel's query against a real engine;
- `promql_selectors`: where each metric of a PromQL expression sits (which calls enclose it, which
  range it reads), so a test can check that counters are only read through rate().

No Grafana server can run here, so these are the dashboards' only interpreter: small on purpose,
and anything they do not understand raises rather than guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

# Values for Grafana's built-in variables when the caller gives none (a 15 s scrape interval).
BUILTIN_DEFAULTS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
# Grafana's default for a terms aggregation whose size is "0" (meaning "all").
TERMS_SIZE_ALL = 500
RAW_SIZE_DEFAULT = 500
RAW_TYPES = {"raw_data", "raw_document", "logs"}
SIMPLE_METRICS = {"max": "max", "min": "min", "avg": "avg", "sum": "sum", "cardinality": "cardinality"}
CALENDAR_UNITS = ("w", "M", "q", "y")


class PanelTarget(NamedTuple):
    dashboard_uid: str
    panel_title: str
    datasource_uid: str | None
    target: dict[str, Any]


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, and the panels a collapsed row carries."""
    for panel in dashboard.get("panels", []):
        yield panel
        if panel.get("type") == "row":
            yield from panel.get("panels", [])


def panel_targets(dashboard: Mapping[str, Any]) -> list[PanelTarget]:
    """(dashboard uid, panel title, datasource uid, target) for every target of every panel.

    A target without its own datasource uses its panel's, as in Grafana.
    """
    found = []
    for panel in iter_panels(dashboard):
        panel_uid = (panel.get("datasource") or {}).get("uid")
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or {}).get("uid") or panel_uid
            found.append(PanelTarget(dashboard.get("uid", ""), panel.get("title", ""), uid, target))
    return found


_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)\]\]|\$(\w+)")


def variable_names(text: str) -> set[str]:
    """Names of the variables a query refers to, in any of Grafana's three spellings."""
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text)}


def substitute(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Replace `$name`, `${name}`, `${name:format}` and `[[name]]` as Grafana interpolates them.

    Built-ins (`__rate_interval`, `__interval`, `__range`) fall back to BUILTIN_DEFAULTS; an
    unknown variable raises KeyError, since Grafana would send it verbatim and the query would fail.
    Values are inserted as given (a single value; no multi-value formatting).
    """
    values = {**BUILTIN_DEFAULTS, **(variables or {})}

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"variable ${name} is not defined")
        return values[name]

    return _VARIABLE.sub(value, expr)


# --- Elasticsearch ---------------------------------------------------------------------------


def _int(value: Any, default: int) -> int:
    return default if value in (None, "") else int(value)


def _terms(agg: Mapping[str, Any], metric_ids: set[str]) -> dict[str, Any]:
    settings = agg.get("settings") or {}
    size = _int(settings.get("size"), 10)
    order_by = settings.get("orderBy", "_term")
    key = "_key" if order_by == "_term" else order_by
    if key not in ("_key", "_count") and key not in metric_ids:
        raise ValueError(f"terms orderBy {order_by!r} names no metric of the target")
    body: dict[str, Any] = {
        "field": agg["field"],
        "size": size or TERMS_SIZE_ALL,
        "order": {key: settings.get("order", "desc")},
        "min_doc_count": _int(settings.get("min_doc_count"), 1),
    }
    if settings.get("missing"):
        body["missing"] = settings["missing"]
    return {"terms": body}


def _date_histogram(
    agg: Mapping[str, Any], time_field: str, time_from_ms: int, time_to_ms: int, variables: Mapping[str, str]
) -> dict[str, Any]:
    settings = agg.get("settings") or {}
    interval = settings.get("interval", "auto")
    if interval == "auto":
        interval = "$__interval"
    interval = substitute(interval, variables)
    body: dict[str, Any] = {
        "field": agg.get("field") or time_field,
        "min_doc_count": _int(settings.get("min_doc_count"), 0),
        "extended_bounds": {"min": time_from_ms, "max": time_to_ms},
        "format": "epoch_millis",
    }
    body["calendar_interval" if interval.endswith(CALENDAR_UNITS) else "fixed_interval"] = interval
    for option in ("offset", "time_zone"):
        if settings.get(option):
            body[option] = settings[option]
    return {"date_histogram": body}


def _metric(metric: Mapping[str, Any]) -> dict[str, Any] | None:
    """A metric's sub-aggregation; None for `count` (each bucket's doc_count is the count)."""
    kind = metric["type"]
    if kind == "count":
        return None
    if kind in SIMPLE_METRICS:
        return {SIMPLE_METRICS[kind]: {"field": metric["field"]}}
    if kind == "unique_count":
        return {"cardinality": {"field": metric["field"]}}
    if kind == "percentiles":
        percents = (metric.get("settings") or {}).get("percents", ["25", "50", "75", "95", "99"])
        return {"percentiles": {"field": metric["field"], "percents": [float(p) for p in percents]}}
    raise NotImplementedError(f"metric type {kind!r} is not translated")


def es_search_body(
    target: Mapping[str, Any],
    *,
    time_from_ms: int,
    time_to_ms: int,
    time_field: str,
    variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The `_search` body Grafana sends for an Elasticsearch target.

    The Lucene query string (variables substituted) and a range on the time field are both filters.
    Raw data / raw document / logs fetch documents, newest first. Otherwise `size` is 0 and the
    bucket aggregations nest in their order, the last one holding the metrics.
    """
    variables = variables or {}
    query = substitute(target.get("query") or "", variables).strip() or "*"
    time_range = {time_field: {"gte": time_from_ms, "lte": time_to_ms, "format": "epoch_millis"}}
    filters = [{"range": time_range}, {"query_string": {"analyze_wildcard": True, "query": query}}]
    body: dict[str, Any] = {"query": {"bool": {"filter": filters}}}

    metrics = target.get("metrics") or [{"type": "count", "id": "1"}]
    raw = [m for m in metrics if m["type"] in RAW_TYPES]
    if raw:
        if len(metrics) > 1:
            raise ValueError("a raw data, raw document or logs target has exactly one metric")
        settings = raw[0].get("settings") or {}
        body["size"] = _int(settings.get("size", settings.get("limit")), RAW_SIZE_DEFAULT)
        body["sort"] = [{time_field: {"order": "desc", "unmapped_type": "boolean"}}, {"_doc": {"order": "desc"}}]
        return body

    body["size"] = 0
    metric_aggs = {m["id"]: agg for m in metrics if (agg := _metric(m)) is not None}
    metric_ids = set(metric_aggs)
    aggs: dict[str, Any] = body
    for bucket in target.get("bucketAggs") or []:
        kind = bucket["type"]
        if kind == "terms":
            agg = _terms(bucket, metric_ids)
        elif kind == "date_histogram":
            agg = _date_histogram(bucket, time_field, time_from_ms, time_to_ms, variables)
        else:
            raise NotImplementedError(f"bucket aggregation {kind!r} is not translated")
        aggs["aggs"] = {bucket["id"]: agg}
        aggs = agg
    if metric_aggs:
        aggs["aggs"] = metric_aggs
    return body


# --- PromQL ----------------------------------------------------------------------------------


class Selector(NamedTuple):
    """A metric in a PromQL expression: its name, range (`[...]` or ""), and the calls around it."""

    name: str
    range: str
    calls: tuple[str, ...]


_PROMQL_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''  # string literals
    r"|\{[^}]*\}"  # label matchers
    r"|\[[^\]]*\]"  # range or subquery
    r"|(?<![\w$.])[a-zA-Z_:][\w:]*"  # identifiers (not a $variable or the tail of a number)
    r"|[()]"
)
# Label lists after an aggregation or a vector match: `by (le)`, `on (job)`, ...
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def promql_selectors(expr: str) -> list[Selector]:
    """Every metric selector of `expr` with the function/aggregation calls enclosing it, outermost first.

    A tokenizer, not a parser: enough for the expressions a dashboard holds. Label lists
    (`by (...)`) are dropped first so that `sum by (le) (x)` reads as the call `sum(x)`.
    """
    tokens = [m.group(0) for m in _PROMQL_TOKEN.finditer(_LABEL_LIST.sub(" ", expr))]
    selectors: list[Selector] = []
    stack: list[str] = []
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token == "(":
            previous = tokens[i - 1] if i else ""
            stack.append(previous if re.fullmatch(r"[a-zA-Z_]\w*", previous) else "")
        elif token == ")":
            if not stack:
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            stack.pop()
        elif re.fullmatch(r"[a-zA-Z_:][\w:]*", token) and following != "(" and token not in _KEYWORDS:
            rest = tokens[i + 1 : i + 3]
            if rest and rest[0].startswith("{"):
                rest = rest[1:]
            range_ = rest[0] if rest and rest[0].startswith("[") else ""
            selectors.append(Selector(token, range_, tuple(c for c in stack if c)))
    if stack:
        raise ValueError(f"unbalanced parentheses in {expr!r}")
    return selectors
