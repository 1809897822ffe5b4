"""Grafana dashboards for `currencies`, as code (grafana-foundation-sdk 11.6 build).

Run `.venv/bin/python grafana/dashboards.py` to write `grafana/dashboards/*.json`, which Grafana
provisions (grafana/provisioning/dashboards/dashboards.yml); `--check` exits 1 when the committed
JSON differs from what this file generates, so nobody edits the JSON by hand.

Rules every panel follows (tests/unit/test_dashboards.py enforces them): a datasource by
provisioned uid, explicit ref_ids and gridPos, a unit; Prometheus counters only inside
rate()/increase() over `$__rate_interval`; every series summed (or, for sampled gauges, maxed)
across instances and functions, because in Lambda each container pushes its own group.
docs/dashboards.md is the reader's tour.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    GridPos,
    Threshold,
    ThresholdsMode,
    VariableModel,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import QueryEditorMode

OUT_DIR = Path(__file__).resolve().parent / "dashboards"

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
EVENTS = DataSourceRef(type_val="elasticsearch", uid="currency-events")
RATES = DataSourceRef(type_val="elasticsearch", uid="currency-rates")
# The rates index keeps a marker document for a removed symbol (chalicelib.consumer.documents); readers skip it.
LISTED = "NOT currency.deleted:true"
TIME_FIELD = "@timestamp"

OVERVIEW_UID = "currencies-overview"
CURRENCY_UID = "currencies-currency"

# The freshness SLO (prometheus/rules/recording.yml): 99 % of changes searchable within 5 s.
SLO_ERROR_BUDGET = 0.01
# The current-state index holds one document per symbol, stamped with the time of its last change:
# a "current rate" panel must not hide symbols that did not change inside the dashboard's range.
CURRENT_STATE_WINDOW = "10y"

ROW_HEIGHT = 1
GRID_WIDTH = 24


# --- targets -------------------------------------------------------------------------------


def promql(ref_id: str, expr: str, legend: str) -> prom.Dataquery:
    """A range query in code mode; the legend names the labels left after aggregation."""
    return (
        prom.Dataquery()
        .datasource(PROMETHEUS)
        .ref_id(ref_id)
        .expr(expr)
        .legend_format(legend)
        .range()
        .editor_mode(QueryEditorMode.CODE)
    )


def rate_sum(metric: str, by: str = "", selector: str = "") -> str:
    """`sum [by (...)] (rate(metric{selector}[$__rate_interval]))`: every instance and function summed."""
    grouping = f" by ({by})" if by else ""
    matchers = f"{{{selector}}}" if selector else ""
    return f"sum{grouping} (rate({metric}{matchers}[$__rate_interval]))"


def quantile(q: float, histogram: str, by: str = "", selector: str = "") -> str:
    """A quantile over the histogram of every instance: buckets summed by `le` first."""
    labels = f"{by}, le" if by else "le"
    matchers = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({labels}) (rate({histogram}_bucket{matchers}[$__rate_interval])))"


def lucene(
    ref_id: str,
    datasource: DataSourceRef,
    query: str,
    metrics: list[Builder[Any]],
    buckets: list[Builder[Any]] | None = None,
) -> es.Dataquery:
    """An Elasticsearch target with a Lucene query string on the datasource's time field."""
    return (
        es.Dataquery()
        .datasource(datasource)
        .ref_id(ref_id)
        .query(query)
        .time_field(TIME_FIELD)
        .metrics(metrics)
        .bucket_aggs(buckets or [])
    )


def raw_documents(size: int) -> es.RawData:
    """Newest documents first (Grafana sorts raw data by the time field, descending)."""
    return es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size(str(size)))


def over_time() -> es.DateHistogram:
    """Buckets of Grafana's automatic interval (`$__interval`) on the time field."""
    settings = es.ElasticsearchDateHistogramSettings().interval("auto")
    return es.DateHistogram().id("3").field(TIME_FIELD).settings(settings)


def keep_columns(names: dict[str, str]) -> list[DataTransformerConfig]:
    """Show only these document fields, in this order, renamed (raw data returns every field)."""
    return [
        DataTransformerConfig(id_val="filterFieldsByName", options={"include": {"names": list(names)}}),
        DataTransformerConfig(
            id_val="organize",
            options={"indexByName": {name: i for i, name in enumerate(names)}, "renameByName": names},
        ),
    ]


# --- panels --------------------------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def graph(title: str, description: str, unit: str, *targets: Builder[Any]) -> timeseries.Panel:
    """A time series: lines, legend as a list under the graph, all series in the tooltip."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .fill_opacity(10)
        .line_width(1)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
        .targets(list(targets))
    )
    return panel.datasource(_datasource_of(targets))


def single(title: str, description: str, unit: str, *targets: Builder[Any]) -> stat.Panel:
    """One number (the last value), with its trend behind it."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .graph_mode(common.BigValueGraphMode.AREA)
        .reduce_options(common_builders.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        .targets(list(targets))
    )
    return panel.datasource(_datasource_of(targets))


def grid(title: str, description: str, unit: str, *targets: Builder[Any]) -> table.Panel:
    panel = table.Panel().title(title).description(description).unit(unit).targets(list(targets))
    return panel.datasource(_datasource_of(targets))


def _datasource_of(targets: tuple[Builder[Any], ...]) -> DataSourceRef:
    """The panel's datasource is its targets' one (a panel never mixes datasources here)."""
    refs = {(t.build().datasource.type_val, t.build().datasource.uid) for t in targets}
    if len(refs) != 1:
        raise ValueError(f"a panel needs exactly one datasource, got {refs}")
    type_val, uid = refs.pop()
    return DataSourceRef(type_val=type_val, uid=uid)


# --- layout --------------------------------------------------------------------------------


@dataclass
class _Row:
    title: str
    collapsed: bool
    panels: list[tuple[Builder[Any], int, int]] = field(default_factory=list)


class Layout:
    """Rows of panels placed left to right, wrapping at 24 columns, with ids numbered in order.

    Explicit positions and ids (rather than the SDK's automatic placement) keep the JSON stable
    and let the tests check the grid.
    """

    def __init__(self) -> None:
        self._rows: list[_Row] = []

    def row(self, title: str, *, collapsed: bool = False) -> Layout:
        self._rows.append(_Row(title, collapsed))
        return self

    def add(self, panel: Builder[Any], width: int, height: int) -> Layout:
        self._rows[-1].panels.append((panel, width, height))
        return self

    def apply(self, board: dashboard.Dashboard) -> dashboard.Dashboard:
        y, next_id = 0, 1
        for row in self._rows:
            row_builder = dashboard.Row(row.title).id(next_id).grid_pos(GridPos(x=0, y=y, w=GRID_WIDTH, h=ROW_HEIGHT))
            next_id += 1
            x, line_y, line_height = 0, y + ROW_HEIGHT, 0
            placed = []
            for panel, width, height in row.panels:
                if x + width > GRID_WIDTH:
                    x, line_y, line_height = 0, line_y + line_height, 0
                panel.id(next_id).grid_pos(GridPos(x=x, y=line_y, w=width, h=height))
                next_id += 1
                placed.append(panel)
                x += width
                line_height = max(line_height, height)
            if row.collapsed:
                # A collapsed row carries its panels; Grafana lays them out when it is opened.
                for panel in placed:
                    row_builder.with_panel(panel)
                row_builder.collapsed(True)
                board.with_row(row_builder)
                y += ROW_HEIGHT
            else:
                row_builder.collapsed(False)
                board.with_row(row_builder)
                for panel in placed:
                    board.with_panel(panel)
                y = line_y + line_height
        return board


def new_dashboard(uid: str, title: str, description: str, time_from: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["currencies"])
        .readonly()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time(time_from, "now")
        .timezone("browser")
        .refresh("30s")
    )


# --- panels shared by both dashboards ------------------------------------------------------


def changes_by_type(description_extra: str = "") -> timeseries.Panel:
    return graph(
        "Changes per second by type",
        "Is the pipeline keeping up with writes? DynamoDB stream records the stream handler "
        "published to the topic, per second, by event type (INSERT, MODIFY, REMOVE), summed over "
        "every instance and Lambda container." + description_extra,
        "cps",
        promql(
            "A",
            rate_sum("currencies_stream_records_total", "event_type", 'outcome="published"'),
            "{{event_type}}",
        ),
    ).stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))


# --- currencies-overview -------------------------------------------------------------------


def overview() -> dashboard.Dashboard:
    layout = Layout()

    layout.row("Freshness SLO: 99 % of changes searchable within 5 s, over 28 days")
    layout.add(
        single(
            "Error budget remaining (28 d)",
            "How much of the 28-day error budget is left? 1 - (share of changes slower than 5 s over 28 d) "
            "/ 1 %. 100 % = no slow change; 0 % = the budget is spent (the SLO is missed); below 0 = "
            "overspent. No value while nothing was indexed in the window (an idle pipeline burns nothing).",
            "percentunit",
            promql("A", f"1 - currencies:freshness_errors:ratio_rate28d / {SLO_ERROR_BUDGET}", "budget left"),
        )
        .thresholds(thresholds((None, "red"), (0, "orange"), (0.25, "green")))
        .no_value("no changes in 28 d"),
        6,
        7,
    )
    layout.add(
        single(
            "Changes searchable within 5 s (28 d)",
            "What share of changes reached the search index within 5 s of their write, over 28 days? "
            "The SLO target is 99 %.",
            "percentunit",
            promql("A", "1 - currencies:freshness_errors:ratio_rate28d", "within 5 s"),
        )
        .decimals(3)
        .thresholds(thresholds((None, "red"), (0.99, "green")))
        .no_value("no changes in 28 d"),
        6,
        7,
    )
    layout.add(
        graph(
            "Freshness burn rate (1 h and 6 h)",
            "How fast is the error budget burning? Burn rate = share of slow changes (> 5 s) in the "
            "window / 1 %. 1 = the budget lasts exactly 28 days; 14.4 over 1 h (2 % of the budget in "
            "an hour) and 6 over 6 h (5 % in 6 h) are the classic page thresholds, drawn as lines.",
            "suffix:x",
            promql("A", f"currencies:freshness_errors:ratio_rate1h / {SLO_ERROR_BUDGET}", "1 h"),
            promql("B", f"currencies:freshness_errors:ratio_rate6h / {SLO_ERROR_BUDGET}", "6 h"),
        )
        .thresholds(thresholds((None, "green"), (6, "orange"), (14.4, "red")))
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        .min(0),
        12,
        7,
    )

    layout.row("Currencies (search indices)")
    layout.add(
        grid(
            "Current rate of every currency",
            "What is every currency's rate now? The current-state index (`currency-rates`, one document "
            "per symbol, written with external versions so a stale change never wins), shown as stored: "
            "the exact decimal text. Removed symbols keep a deletion marker there (so no late change can "
            "bring them back), which the query leaves out. The panel reads the last "
            f"{CURRENT_STATE_WINDOW} whatever the dashboard's range, so a symbol that has not changed "
            "lately is still listed.",
            "none",
            lucene("A", RATES, LISTED, [raw_documents(500)]),
        )
        .time_from(CURRENT_STATE_WINDOW)
        .transformations(
            keep_columns(
                {
                    "currency.symbol": "Symbol",
                    "currency.rate": "Rate",
                    "@timestamp": "Changed at",
                    "currency.version": "Version",
                }
            )
        )
        .sort_by([common_builders.TableSortByFieldState().display_name("Symbol")]),
        8,
        10,
    )
    layout.add(
        graph(
            "Rate history (20 most changed currencies)",
            "How did rates move? From the events index (`currency-events`, one document per change): the "
            "highest rate per interval for each of the 20 symbols with the most changes in the range. "
            "A line holds its value until the next change. Pick one symbol in the Currency dashboard.",
            "none",
            lucene(
                "A",
                EVENTS,
                "event.action:(insert OR modify)",
                [es.Max().id("1").field("currency.rate")],
                [
                    es.Terms()
                    .id("2")
                    .field("currency.symbol")
                    .settings(es.ElasticsearchTermsSettings().size("20").order_by("_count").min_doc_count("1")),
                    over_time(),
                ],
            ).alias("{{term currency.symbol}}"),
        )
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .span_nulls(True),
        16,
        10,
    )
    layout.add(
        grid(
            "Latest changes",
            "What changed last? The newest 100 change documents in the range, newest first: action, "
            "symbol, new and previous rate (exact text), version, and when the change was indexed.",
            "none",
            lucene("A", EVENTS, "*", [raw_documents(100)]),
        ).transformations(
            keep_columns(
                {
                    "@timestamp": "Changed at",
                    "event.action": "Action",
                    "currency.symbol": "Symbol",
                    "currency.rate": "Rate",
                    "currency.previous_rate": "Previous rate",
                    "currency.version": "Version",
                    "event.ingested": "Indexed at",
                }
            )
        ),
        24,
        9,
    )

    layout.row("Is the pipeline keeping up?")
    layout.add(changes_by_type(), 8, 8)
    layout.add(
        graph(
            "Stream records not published, by outcome",
            "Is anything lost between the table and the topic? Stream records the handler did not "
            "publish: dead_lettered (kept for redrive), failed (the batch is retried), unordered. "
            "Should be empty.",
            "cps",
            promql(
                "A",
                rate_sum("currencies_stream_records_total", "event_type, outcome", 'outcome!="published"'),
                "{{outcome}} {{event_type}}",
            ),
        ),
        8,
        8,
    )
    layout.add(
        graph(
            "SNS publishes by outcome",
            "Does the topic accept our messages? Messages published to SNS per second, by outcome (published, failed).",
            "cps",
            promql("A", rate_sum("currencies_sns_publishes_total", "outcome"), "{{outcome}}"),
        ),
        8,
        8,
    )
    layout.add(
        graph(
            "Consumer outcomes",
            "What happens to each message? Messages the consumer handled per second, by outcome: "
            "indexed (new change), duplicate (a redelivery, harmless), stale (an older change than the "
            "indexed one, harmless), failed (returned to SQS for another try), dead_lettered. In a "
            "healthy steady state, indexed matches published changes.",
            "cps",
            promql("A", rate_sum("currencies_consumer_messages_total", "outcome"), "{{outcome}}"),
        ),
        12,
        8,
    )
    layout.add(
        graph(
            "Consumer queue depth",
            "Is a backlog building? Messages visible in the consumer's SQS queue, sampled by the metrics "
            "janitor. A gauge, so the maximum over containers is shown (summing the same queue's samples "
            "from two janitor containers would count it twice). Growing = the consumer falls behind.",
            "short",
            promql("A", 'max(currencies_queue_messages{queue="consumer"})', "consumer queue"),
        ).min(0),
        12,
        8,
    )

    layout.row("Where does a change's time go?")
    layout.add(
        graph(
            "Per-stage lag p50 and p99",
            "Which hop is slow? Time a change spends in each stage: table_to_stream (write until the "
            "stream handler publishes it), stream_to_consumer (SNS + SQS transit), consumer_to_indexed "
            "(until its bulk request ends). Solid p50, the tail p99 beside it.",
            "s",
            promql("A", quantile(0.5, "currencies_stage_lag_seconds", "stage"), "{{stage}} p50"),
            promql("B", quantile(0.99, "currencies_stage_lag_seconds", "stage"), "{{stage}} p99"),
        ),
        12,
        9,
    )
    layout.add(
        graph(
            "End-to-end lag p50, p95, p99",
            "How long until a change is searchable? From the change in the table (stream timestamp, "
            "1 s resolution on AWS) to the end of the bulk request that indexed it. The SLO line is 5 s.",
            "s",
            promql("A", quantile(0.5, "currencies_end_to_end_lag_seconds"), "p50"),
            promql("B", quantile(0.95, "currencies_end_to_end_lag_seconds"), "p95"),
            promql("C", quantile(0.99, "currencies_end_to_end_lag_seconds"), "p99"),
        )
        .thresholds(thresholds((None, "green"), (5, "red")))
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)),
        12,
        9,
    )

    layout.row("API")
    layout.add(
        graph(
            "API request rate by route and status class",
            "Who calls the API and how does it answer? Requests per second by route and status class (2xx, 4xx, 5xx).",
            "reqps",
            promql(
                "A",
                rate_sum("currencies_api_requests_total", "route, status_class"),
                "{{route}} {{status_class}}",
            ),
        ),
        8,
        8,
    )
    layout.add(
        graph(
            "API errors (4xx and 5xx)",
            "Is the API failing? Requests per second answered with 4xx (the caller's mistake: bad "
            "input, unknown symbol) or 5xx (ours), by route; and table items another writer left "
            "unreadable, skipped when listing (fix or delete them).",
            "reqps",
            promql(
                "A",
                rate_sum("currencies_api_requests_total", "route, status_class", 'status_class=~"4xx|5xx"'),
                "{{route}} {{status_class}}",
            ),
            promql("B", rate_sum("currencies_store_unreadable_items_total"), "unreadable items skipped"),
        ),
        8,
        8,
    )
    layout.add(
        graph(
            "API latency p50, p95, p99",
            "How long do requests take? Handling time over every route and instance.",
            "s",
            promql("A", quantile(0.5, "currencies_api_request_duration_seconds"), "p50"),
            promql("B", quantile(0.95, "currencies_api_request_duration_seconds"), "p95"),
            promql("C", quantile(0.99, "currencies_api_request_duration_seconds"), "p99"),
        ),
        8,
        8,
    )

    layout.row("Dead letters and search-engine writes")
    layout.add(
        graph(
            "Dead-letter queue depth",
            "Did any change give up? Messages in the dead-letter queue (each one a change that failed "
            "five receives), sampled by the metrics janitor; the maximum over containers. Anything "
            "above 0 needs a look and a redrive.",
            "short",
            promql("A", 'max(currencies_queue_messages{queue="dead_letter"})', "dead letters"),
        )
        .thresholds(thresholds((None, "green"), (1, "red")))
        .thresholds_style(common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.AREA))
        .min(0),
        6,
        8,
    )
    layout.add(
        graph(
            "Bulk item errors by reason",
            "Why does the engine refuse documents? Items rejected per second, by engine and the "
            "engine's error type (version conflicts of duplicates and stale changes are expected).",
            "cps",
            promql(
                "A",
                rate_sum("currencies_bulk_item_errors_total", "engine, reason"),
                "{{engine}} {{reason}}",
            ),
        ),
        6,
        8,
    )
    layout.add(
        graph(
            "Bulk item retries",
            "Is the engine pushing back? Items sent again after a 429, a 5xx or a failed request, per "
            "second, by engine.",
            "cps",
            promql("A", rate_sum("currencies_bulk_item_retries_total", "engine"), "{{engine}}"),
        ),
        6,
        8,
    )
    layout.add(
        graph(
            "Bulk request latency p50, p99",
            "How long does the engine take per bulk request? By engine.",
            "s",
            promql("A", quantile(0.5, "currencies_bulk_request_duration_seconds", "engine"), "{{engine}} p50"),
            promql("B", quantile(0.99, "currencies_bulk_request_duration_seconds", "engine"), "{{engine}} p99"),
        ),
        6,
        8,
    )

    layout.row("Metrics delivery (Pushgateway)", collapsed=True)
    layout.add(
        graph(
            "Metrics pushes by outcome",
            "Do the Lambda containers' metrics reach the Pushgateway? Pushes per second by outcome "
            "(pushed, failed). A failed push is counted and shows up with the next successful one. "
            "Empty with the local runtime, which is scraped directly.",
            "cps",
            promql("A", rate_sum("currencies_metrics_pushes_total", "outcome"), "{{outcome}}"),
        ),
        12,
        8,
    )
    layout.add(
        graph(
            "Retired Pushgateway groups",
            "Is the janitor keeping the Pushgateway small? Groups of idle containers (idle > 15 min) "
            "folded into the retired totals and deleted, per minute.",
            "cpm",
            promql("A", f"{rate_sum('currencies_metrics_groups_retired_total')} * 60", "retired groups"),
        ),
        12,
        8,
    )

    layout.row("Operator commands (verify, backfill, replay, redrive)", collapsed=True)
    layout.add(
        graph(
            "Operator command progress",
            "How far is a backfill, a replay or a redrive, and did verify find differences? Records "
            "each running command has handled so far, by operation and outcome (scanned, written, "
            "different, skipped, failed), pushed every 5 s while it runs; a finished run stays "
            'until the janitor retires its group (15 min idle). README: "Operating it".',
            "short",
            promql("A", "sum by (operation, outcome) (currencies_operation_records)", "{{operation}} {{outcome}}"),
        ),
        12,
        8,
    )
    layout.add(
        graph(
            "Time since an operator command finished",
            "When did each command last end, and how (clean or different for verify; complete, "
            "interrupted or failed for the others)? Seconds since the run ended, for runs the "
            "janitor has not retired yet (15 min idle).",
            "s",
            promql(
                "A",
                "time() - max by (operation, result) (currencies_operation_finished_timestamp_seconds)",
                "{{operation}} {{result}}",
            ),
        ),
        12,
        8,
    )

    board = new_dashboard(
        OVERVIEW_UID,
        "Currencies: overview",
        "The currencies pipeline (API -> DynamoDB -> stream -> SNS -> SQS -> consumer -> search index): "
        "freshness SLO, current rates, throughput, where a change's time goes, API, dead letters. "
        "Tour: docs/dashboards.md.",
        "now-6h",
    ).link(
        dashboard.DashboardLink("Currency")
        .type(DashboardLinkType.DASHBOARDS)
        .tags(["currencies"])
        .as_dropdown(False)
        .include_vars(False)
        .keep_time(True)
        .target_blank(False)
        .icon("external link")
        .tooltip("")
    )
    return layout.apply(board)


class QueryVariable(dashboard.QueryVariable):
    """The SDK's QueryVariable without the interval variables' `auto*` fields.

    The SDK writes `auto`, `auto_min` and `auto_count` on every variable; Grafana 11.6's dashboard
    schema allows them on no variable type, so schema validation rejects them.
    """

    def build(self) -> VariableModel:
        model = super().build()
        model.auto = model.auto_min = model.auto_count = None
        return model


# --- currencies-currency -------------------------------------------------------------------


def currency() -> dashboard.Dashboard:
    symbol_query = "currency.symbol:$symbol"
    listed_symbol_query = f"{symbol_query} AND {LISTED}"
    layout = Layout()
    layout.row("$symbol")
    layout.add(
        single(
            "Current rate of $symbol",
            "What is this currency's rate now? Its document in the current-state index "
            f"(`currency-rates`), exact decimal text. Reads the last {CURRENT_STATE_WINDOW} whatever the "
            "dashboard's range. No value = the symbol does not exist (never created, or removed).",
            "none",
            lucene("A", RATES, listed_symbol_query, [raw_documents(1)]),
        )
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(
            common_builders.ReduceDataOptions().values(False).calcs(["lastNotNull"]).fields("/^currency\\.rate$/")
        )
        .time_from(CURRENT_STATE_WINDOW)
        .no_value("not listed"),
        6,
        8,
    )
    layout.add(
        graph(
            "Rate history of $symbol",
            "How did this rate move? From the events index: the highest rate per interval (a line holds "
            "its value until the next change). A remove shows as the end of the line.",
            "none",
            lucene(
                "A",
                EVENTS,
                symbol_query,
                [es.Max().id("1").field("currency.rate")],
                [over_time()],
            ).alias("$symbol"),
        )
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .span_nulls(True),
        18,
        8,
    )
    layout.add(
        graph(
            "Changes of $symbol per interval, by action",
            "How often does this symbol change? Change documents per interval, by action (insert, "
            "modify, remove), from the events index.",
            "short",
            lucene(
                "A",
                EVENTS,
                symbol_query,
                [es.Count().id("1")],
                [
                    es.Terms()
                    .id("2")
                    .field("event.action")
                    .settings(es.ElasticsearchTermsSettings().size("3").order_by("_key").min_doc_count("1")),
                    over_time(),
                ],
            ).alias("{{term event.action}}"),
        )
        .draw_style(common.GraphDrawStyle.BARS)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL)),
        12,
        8,
    )
    layout.add(
        changes_by_type(
            " Prometheus metrics carry no symbol label (labels stay bounded), so this is every "
            "symbol's changes, not only $symbol's: the panel to its left counts this symbol's."
        ),
        12,
        8,
    )
    layout.add(
        grid(
            "Changes of $symbol",
            "What exactly changed, and when? Every change document of this symbol in the range, newest "
            "first (up to 500): action, new and previous rate (exact text), version, indexing time.",
            "none",
            lucene("A", EVENTS, symbol_query, [raw_documents(500)]),
        ).transformations(
            keep_columns(
                {
                    "@timestamp": "Changed at",
                    "event.action": "Action",
                    "currency.rate": "Rate",
                    "currency.previous_rate": "Previous rate",
                    "currency.version": "Version",
                    "event.id": "Change id",
                    "event.ingested": "Indexed at",
                }
            )
        ),
        24,
        10,
    )

    symbol = (
        QueryVariable("symbol")
        .label("Symbol")
        .description(
            "Symbols in the current-state index whose last change falls in the dashboard's range "
            "(Grafana filters variable queries by time), removed ones included so that their history "
            "stays one click away; type any other symbol."
        )
        .datasource(RATES)
        .query(json.dumps({"find": "terms", "field": "currency.symbol", "size": 500}))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(False)
        .include_all(False)
        .allow_custom_value(True)
    )
    board = new_dashboard(
        CURRENCY_UID,
        "Currencies: one currency",
        "One currency: its current rate, history and changes. Tour: docs/dashboards.md.",
        "now-7d",
    ).with_variable(symbol)
    return layout.apply(board)


# --- output --------------------------------------------------------------------------------

DASHBOARDS = {f"{OVERVIEW_UID}.json": overview, f"{CURRENCY_UID}.json": currency}


def render() -> dict[str, str]:
    """File name -> JSON text, stable (sorted keys, trailing newline) so diffs stay readable."""
    return {
        name: json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for name, build in DASHBOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is not what we generate")
    args = parser.parse_args(argv)
    rendered = render()
    if args.check:
        stale = [
            name
            for name, text in rendered.items()
            if not (OUT_DIR / name).exists() or (OUT_DIR / name).read_text() != text
        ]
        extra = sorted(p.name for p in OUT_DIR.glob("*.json") if p.name not in rendered)
        for name in stale:
            print(f"{OUT_DIR / name}: differs from grafana/dashboards.py; run it to regenerate", file=sys.stderr)
        for name in extra:
            print(f"{OUT_DIR / name}: not generated by grafana/dashboards.py", file=sys.stderr)
        return 1 if stale or extra else 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (OUT_DIR / name).write_text(text)
        print(OUT_DIR / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
