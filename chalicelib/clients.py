"""Clients built once per Lambda container, on first use, from `Settings`.

Nothing connects at import time, so `app.py` imports without network access (for
`chalice package`, unit tests and cold starts that never touch a given client).
`AWS_ENDPOINT_URL`, when set (the local runtime sets it to moto server), redirects
every boto3 client.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3

from chalicelib.config import Settings
from chalicelib.deadletter import DeadLetter, dead_letter
from chalicelib.history import HistoryReader
from chalicelib.sinks.base import SearchEngine
from chalicelib.sinks.sink import SearchSink, connect
from chalicelib.store import RateStore


@cache
def settings() -> Settings:
    return Settings.from_env()


@cache
def store() -> RateStore:
    return RateStore(boto3.resource("dynamodb").Table(settings().table_name))


@cache
def sns() -> Any:
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
    return boto3.client("sqs")


def dead_letter_queue(source: str) -> DeadLetter | None:
    url = settings().dlq_url
    if url is None:
        return None
    client = sqs()
    return lambda body, reason: dead_letter(client, url, body, reason=reason, source=source)
