"""The README's walkthrough, end to end: the original example's curl calls -> search engine.

Runs the exact curl commands (JSON body, no Content-Type header) against the real
local HTTP API; moto plays DynamoDB, SNS and SQS; Elasticsearch is a real node.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from currencies_local.pipeline import LocalPipeline
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually

SEARCHABLE_WITHIN_S = 5.0


def curl(*args: str) -> dict[str, Any]:
    completed = subprocess.run(["curl", "-sS", *args], check=True, capture_output=True, text=True, timeout=30)
    return json.loads(completed.stdout)


def test_original_example_calls_end_up_in_the_search_engine(pipeline: LocalPipeline, search: EngineUnderTest) -> None:
    api = pipeline.api_url
    assert curl("-X", "POST", f"{api}/currency", "--data", '{"symbol":"USD","rate":"100"}')["rate"] == "100"
    assert curl("-X", "POST", f"{api}/currency", "--data", '{"symbol":"EUR","rate":"999"}')["revision"] == 1
    assert curl("-X", "POST", f"{api}/currency", "--data", '{"symbol":"EUR","rate":"100"}')["revision"] == 2
    assert curl("-X", "DELETE", f"{api}/currency/EUR")["deleted"] is True
    last_call = time.monotonic()

    symbols = ["USD", "EUR"]
    events = eventually(lambda: search.events_for(symbols), lambda found: len(found) >= 4, SEARCHABLE_WITHIN_S)
    delay = time.monotonic() - last_call
    print(f"walkthrough: 4 events searchable {delay:.2f} s after the last call")

    summary = [(e["event"]["action"], e["currency"]["symbol"], e["currency"].get("rate")) for e in events]
    assert summary == [
        ("insert", "USD", "100"),
        ("insert", "EUR", "999"),
        ("modify", "EUR", "100"),
        ("remove", "EUR", None),
    ]
    assert events[2]["currency"]["previous_rate"] == "999"
    assert events[3]["currency"]["previous_rate"] == "100"
    versions = [e["currency"]["version"] for e in events if e["currency"]["symbol"] == "EUR"]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    assert search.rates_for(symbols) == {"USD": "100"}
    search.client.indices.refresh(index=search.rates_index)
    # The README's query, narrowed to this test's symbols: other tests share the index.
    readme_query = "NOT+currency.deleted:true+AND+currency.symbol:(USD+OR+EUR)"
    hits = curl(f"{search.url}/{search.rates_index}/_search?q={readme_query}")["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == ["USD"]
    listed = [(c["symbol"], c["rate"]) for c in curl(f"{api}/currency")["currencies"] if c["symbol"] in symbols]
    assert listed == [("USD", "100")]
