"""Fault tests on real services: the promise holds when parts of the pipeline fail.

Each test ends with a reconciliation: the current-state index equals the table, and every
symbol's history in the events index is exactly the writes made, in version order.
"""

from __future__ import annotations

import os
import random
import signal
import time
from decimal import Decimal

import boto3
import pytest

from chalicelib.currency import CurrencyRate
from chalicelib.store import RateStore
from currencies_local.pipeline import LocalPipeline
from tests.integration.conftest import ENGINE_PROCESSES
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually

OUTAGE_S = 20
CHANGES = 2000


def reconcile(pipeline: LocalPipeline, search: EngineUnderTest, symbols: list[str], writes: int) -> None:
    """The table and both indices agree, after every change made it through."""
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    indexed = eventually(lambda: search.count_events_for(symbols), lambda n: n >= writes, 180)
    assert indexed == writes, f"{indexed} events indexed for {writes} writes"
    table = {rate.symbol: rate.rate for rate in store.list() if rate.symbol in symbols}
    assert search.current_rates(symbols) == table
    for symbol in symbols:
        versions = [e["currency"]["version"] for e in search.events_for([symbol])]
        assert versions == sorted(versions), f"{symbol}'s history is not in version order"
        assert len(set(versions)) == len(versions), f"{symbol}'s history has a repeated version"


def test_the_engine_frozen_for_20_s_in_the_middle_of_2000_changes(
    pipeline: LocalPipeline, search: EngineUnderTest
) -> None:
    node = ENGINE_PROCESSES.get(search.name)
    if node is None:
        pytest.skip(f"{search.name} was given by URL: this test must own the node it freezes")
    assert pipeline.resources is not None
    store = RateStore(boto3.resource("dynamodb").Table(pipeline.resources.table_name))
    symbols = [f"F{a}{b}" for a in "ABCD" for b in "ABCDE"]
    rng = random.Random(11)
    writes = 0
    frozen_at = None
    try:
        while writes < CHANGES:
            if writes == CHANGES // 2 and frozen_at is None:
                os.killpg(node.pid, signal.SIGSTOP)  # hung, not gone: requests time out
                frozen_at = time.monotonic()
            if frozen_at is not None and time.monotonic() - frozen_at > OUTAGE_S:
                os.killpg(node.pid, signal.SIGCONT)
                frozen_at = -1.0
            symbol = rng.choice(symbols)
            if rng.random() < 0.1:
                writes += store.delete(symbol) is not None
            else:
                store.put(CurrencyRate(symbol, Decimal(rng.randint(1, 10**6)).scaleb(-3)))
                writes += 1
        if frozen_at is not None and frozen_at >= 0:
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - frozen_at)))
    finally:
        os.killpg(node.pid, signal.SIGCONT)
    reconcile(pipeline, search, symbols, writes)
