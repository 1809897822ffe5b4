"""Every metric the pipeline exposes (docs/design.md, "Metrics"): prefix `currencies_`, bounded labels.

Long-running processes serve this registry on `/metrics`. A Lambda cannot be
scraped; pushing to a Pushgateway is the roadmap's next step and uses this same registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

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
STREAM_RECORDS = Counter(
    "currencies_stream_records",
    "DynamoDB stream records seen by the stream handler, by event type and outcome.",
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
    "Time from the change in the table (stream timestamp, 1 s resolution) to its indexing.",
    buckets=(0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
CURRENCY_RATE = Gauge(
    "currencies_currency_rate",
    "Latest indexed rate per currency.",
    ["symbol"],
    registry=REGISTRY,
)
