"""Every metric the pipeline exposes (docs/design.md, "Metrics"): prefix `currencies_`, bounded labels.

Long-running processes (the local runtime) serve this registry on `/metrics`. A
Lambda cannot be scraped: `observability.push` pushes it to a Pushgateway after
each invocation, one group per container, and `observability.janitor` retires the
groups of containers that went away.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# `_created` series double the series count and no query here uses them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900, 3600)

API_REQUESTS = Counter(
    "currencies_api_requests",
    "API requests by route, method and status class.",
    ["route", "method", "status_class"],
    registry=REGISTRY,
)
API_LATENCY = Histogram(
    "currencies_api_request_duration_seconds",
    "API request handling time.",
    ["route", "method"],
    registry=REGISTRY,
)
STORE_UNREADABLE_ITEMS = Counter(
    "currencies_store_unreadable_items",
    "Table items the API could not read (another writer left no valid rate or counter): skipped by "
    "reads and listings, replaced by DELETE or PUT.",
    registry=REGISTRY,
)
STREAM_RECORDS = Counter(
    "currencies_stream_records",
    "DynamoDB stream records seen by the stream handler, by event type and outcome (published, "
    "dead_lettered, dead_letter_failed: only in the logs, failed: left to the event source, unordered).",
    ["event_type", "outcome"],
    registry=REGISTRY,
)
SNS_PUBLISHES = Counter(
    "currencies_sns_publishes",
    "Changes published to the topic (one per message), by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
CONSUMER_MESSAGES = Counter(
    "currencies_consumer_messages",
    "Messages handled by the consumer, by outcome (indexed, duplicate, stale, failed, dead_lettered).",
    ["outcome"],
    registry=REGISTRY,
)
BULK_LATENCY = Histogram(
    "currencies_bulk_request_duration_seconds",
    "Search-engine bulk request time.",
    ["engine"],
    registry=REGISTRY,
)
BULK_RETRIES = Counter(
    "currencies_bulk_item_retries",
    "Bulk items sent again after a 429, a 5xx or a failed request.",
    ["engine"],
    registry=REGISTRY,
)
BULK_ITEM_ERRORS = Counter(
    "currencies_bulk_item_errors",
    "Bulk items the engine refused, by reason (the engine's error type).",
    ["engine", "reason"],
    registry=REGISTRY,
)
END_TO_END_LAG = Histogram(
    "currencies_end_to_end_lag_seconds",
    "Time from the change in the table (stream timestamp) to the end of the bulk request that indexed it.",
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)
STAGE_LAG = Histogram(
    "currencies_stage_lag_seconds",
    "Time a change spends in each hop: table_to_stream (until the stream handler publishes it), "
    "stream_to_consumer (SNS + SQS transit), consumer_to_indexed (until its bulk request ends).",
    ["stage"],
    buckets=LAG_BUCKETS,
    registry=REGISTRY,
)
STAGES = ("table_to_stream", "stream_to_consumer", "consumer_to_indexed")
QUEUE_MESSAGES = Gauge(
    "currencies_queue_messages",
    "Messages visible in a queue (queue: consumer or dead_letter), sampled by the metrics janitor.",
    ["queue"],
    registry=REGISTRY,
)
METRICS_PUSHES = Counter(
    "currencies_metrics_pushes",
    "Pushes of this container's metrics to the Pushgateway, by outcome (pushed, failed); "
    "a failure is counted and shows in the next push that succeeds.",
    ["outcome"],
    registry=REGISTRY,
)
METRICS_GROUPS_RETIRED = Counter(
    "currencies_metrics_groups_retired",
    "Pushgateway groups of idle containers that the janitor folded into the retired totals and deleted.",
    registry=REGISTRY,
)
CURRENCY_RATE = Gauge(
    "currencies_currency_rate",
    "Latest rate this process indexed per currency (long-running processes only: never pushed from "
    "Lambda, where containers disagree; dashboards read the current-state index instead).",
    ["symbol"],
    registry=REGISTRY,
)


# Known label values start at zero: a panel shows 0 rather than "No data", and rate() sees the first
# event (Prometheus cannot tell how much a series that first appears at 1 grew).
for _outcome in ("indexed", "duplicate", "stale", "failed", "dead_lettered"):
    CONSUMER_MESSAGES.labels(_outcome)
for _outcome in ("published", "failed"):
    SNS_PUBLISHES.labels(_outcome)
for _outcome in ("pushed", "failed"):
    METRICS_PUSHES.labels(_outcome)
for _stage in STAGES:
    STAGE_LAG.labels(_stage)
for _event_type in ("INSERT", "MODIFY", "REMOVE"):
    for _outcome in ("published", "dead_lettered", "dead_letter_failed", "failed", "unordered"):
        STREAM_RECORDS.labels(_event_type, _outcome)


def start_routes_at_zero(routes: dict[str, dict[str, object]]) -> None:
    """Every route's series from the start: a series born at 1 hides its first request from rate()."""
    for route, methods in routes.items():
        for method in methods:
            API_LATENCY.labels(route, method)
            for status_class in ("2xx", "4xx", "5xx"):
                API_REQUESTS.labels(route, method, status_class)


def observe_all(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(a)` for each amount, as one update per bucket and one of the sum.

    The consumer observes three lags per change; this costs a bisect per amount instead of
    a lock and a linear bucket scan each. It writes prometheus_client's own per-bucket
    values (non-cumulative, the bucket of the first bound >= amount), so exposition is
    unchanged; tests/unit/test_consumer_fast_path.py checks it against `observe` for the pinned version.
    """
    if not amounts:
        return
    histogram._raise_if_not_observable()  # a labelled parent must be given its labels first
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1
    histogram._sum.inc(math.fsum(amounts))
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
