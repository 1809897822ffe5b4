"""Clients built once per Lambda container, on first use, from `Settings`.

Nothing connects at import time, so `app.py` imports without network access (for
`chalice package`, unit tests and cold starts that never touch a given client).
`AWS_ENDPOINT_URL`, when set (the local runtime sets it to moto server), redirects
every boto3 client.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from chalicelib.api.history import HistoryReader
from chalicelib.api.store import RateStore
from chalicelib.config import Settings
from chalicelib.deadletter import DeadLetter, dead_letter
from chalicelib.observability.push import MetricsPusher
from chalicelib.observability.pushgateway import Pushgateway
from chalicelib.sinks.base import SearchEngine
from chalicelib.sinks.sink import SearchSink, connect


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def store() -> RateStore:
    import boto3  # noqa: PLC0415 - boto3 costs ~100 ms of a cold start; import it where a client is made

    return RateStore(boto3.resource("dynamodb").Table(settings().table_name))


@cache
def sns() -> Any:
    import boto3  # noqa: PLC0415

    return boto3.client("sns")


@cache
def search_engine() -> SearchEngine:
    return connect(settings().search)


@cache
def history() -> HistoryReader:
    return HistoryReader(search_engine(), settings().events_index)


@cache
def sink() -> SearchSink:
    """The consumer's sink; it ensures its indices on its first write in this container."""
    config = settings()
    return SearchSink(search_engine(), config.events_index, config.rates_index)


@cache
def sqs() -> Any:
    import boto3  # noqa: PLC0415

    return boto3.client("sqs")


def dead_letter_queue(source: str) -> DeadLetter | None:
    url = settings().dlq_url
    if url is None:
        return None
    # The client is made on the first letter: most invocations send none, and boto3 is slow to import.
    return lambda body, reason: dead_letter(sqs(), url, body, reason=reason, source=source)


@cache
def pushgateway() -> Pushgateway | None:
    url = settings().pushgateway_url
    return None if url is None else Pushgateway(url)


@cache
def metrics_pusher() -> MetricsPusher | None:
    """This container's pusher when a Pushgateway is configured (Lambda); None where we are scraped."""
    gateway = pushgateway()
    if gateway is None:
        return None
    # A container idle this long takes a new identity, well before the janitor may retire its group.
    rotate_after_s = settings().metrics_idle_after_s / 3
    return MetricsPusher(gateway, function_name(), rotate_after_s=rotate_after_s)


def function_name() -> str:
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")


def queue_urls() -> dict[str, str]:
    """The queues whose depth is sampled: the consumer's queue (by name) and the dead-letter queue."""
    config = settings()
    urls = {"consumer": sqs().get_queue_url(QueueName=config.queue_name)["QueueUrl"]}
    if config.dlq_url:
        urls["dead_letter"] = config.dlq_url
    return urls
