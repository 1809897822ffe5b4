"""Delay from an API write to its event being searchable, through the whole local pipeline.

Starts the same `LocalPipeline` as `currencies up` (moto server, a real engine node,
the API, both pollers) on free ports, then, one at a time and at random moments,
POSTs a rate and measures two delays:
- visible: until a real-time GET of the rates index returns the new revision (the
  pipeline's own latency: stream poll, relay, SNS, SQS poll, consumer, bulk);
- searchable: until a search of the events index returns the change (adds the
  engine's 1 s refresh interval, as a user searching would see it).

    python -m bench.end_to_end_latency --engine opensearch --writes 30
"""

from __future__ import annotations

import json
import random
import statistics
import time
import urllib.request
from typing import Any

import click
from rich.console import Console
from rich.progress import track

from chalicelib.config import SearchSettings
from chalicelib.sinks.sink import connect
from currencies_local.opensearch import free_http_port
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import free_port

console = Console()


def post(api: str, symbol: str, rate: str) -> dict:
    request = urllib.request.Request(
        f"{api}/currency", data=json.dumps({"symbol": symbol, "rate": rate}).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--engine", type=click.Choice(["elasticsearch", "opensearch"]), default="elasticsearch", show_default=True
)
@click.option("--writes", default=30, show_default=True, help="Sequential API writes to time.")
def main(engine: str, writes: int) -> None:
    """Measure start-up time and POST -> searchable delay of the local pipeline."""
    search_port = free_port() if engine == "elasticsearch" else free_http_port()
    options = Options(
        api_port=free_port(), moto_port=free_port(), metrics_port=free_port(),
        engine=engine, search_port=search_port,  # type: ignore[arg-type]
    )  # fmt: skip
    pipeline = LocalPipeline(options)
    started = time.perf_counter()
    with console.status(f"starting the pipeline on {engine}"):
        pipeline.start()
    ready_s = time.perf_counter() - started
    reader = connect(SearchSettings(engine=engine, url=pipeline.search_url))  # type: ignore[arg-type]
    client = raw_client(engine, pipeline.search_url)
    rng = random.Random(1)
    visible, searchable = [], []
    try:
        for n in track(range(writes), description="POST -> visible -> searchable", console=console):
            time.sleep(rng.uniform(0, 1))  # no phase lock with the engine's refresh schedule
            written = time.perf_counter()
            revision = post(pipeline.api_url, "LAT", f"1.{n + 1}")["revision"]
            while current_revision(client) != revision:
                time.sleep(0.005)
            visible.append(time.perf_counter() - written)
            while not reader.search("currency-events", event_query(revision), 5)["hits"]["hits"]:
                time.sleep(0.01)
            searchable.append(time.perf_counter() - written)
    finally:
        pipeline.stop()
    console.print(f"{engine}: ready in {ready_s:.1f} s; over {writes} writes:")
    for name, delays in (("POST -> visible", visible), ("POST -> searchable", searchable)):
        p95 = statistics.quantiles(delays, n=20)[18]
        console.print(f"  {name}: median {statistics.median(delays):.2f} s, p95 {p95:.2f} s, max {max(delays):.2f} s")


def raw_client(engine: str, url: str) -> Any:
    if engine == "opensearch":
        from opensearchpy import OpenSearch  # noqa: PLC0415

        return OpenSearch(hosts=[url])
    from elasticsearch import Elasticsearch  # noqa: PLC0415

    return Elasticsearch(url)


def current_revision(client: Any) -> int | None:
    """The revision in the rates index, by real-time multi-get (no refresh needed)."""
    (document,) = client.mget(index="currency-rates", body={"ids": ["LAT"]})["docs"]
    return document["_source"]["currency"]["version"] % 10**6 if document.get("found") else None


def event_query(revision: int) -> dict[str, Any]:
    filters = [{"term": {"currency.symbol": "LAT"}}, {"term": {"currency.revision": revision}}]
    return {"query": {"bool": {"filter": filters}}, "size": 1}


if __name__ == "__main__":
    main()
