"""Index templates and mappings on each real engine: concurrent set-up, rate queries, refused documents."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.sinks.sink import SearchSink
from currencies_local.synthetic import TableModel
from tests.integration.engines import EngineUnderTest


def test_many_cold_starts_set_up_the_indices_at_once(engine: EngineUnderTest) -> None:
    run = uuid.uuid4().hex[:8]
    sinks = [SearchSink(engine.sink.search_engine, f"cold-{run}-events", f"cold-{run}-rates") for _ in range(8)]
    with ThreadPoolExecutor(len(sinks)) as pool:
        list(pool.map(lambda sink: sink.ensure_indices(), sinks))  # raises if any of them failed
    mapping = engine.client.indices.get_mapping(index=f"cold-{run}-rates")
    (index,) = mapping.values()
    assert index["mappings"]["dynamic"] == "strict"
    assert index["mappings"]["properties"]["currency"]["properties"]["rate"]["type"] == "double"


def test_rates_support_ranges_aggregations_and_exact_values(engine: EngineUnderTest) -> None:
    symbols = [f"R{uuid.uuid4().hex[:8]}{n}" for n in range(3)]
    table = TableModel()
    for symbol, rate in zip(symbols, ["1.0856", "0.0000012345678901", "155.25"], strict=True):
        table.put(symbol, Decimal(rate))
    report = consume(
        [InboundMessage(c.id, c.to_json()) for c in table.changes()],
        engine.sink,
        events_index=engine.events_index,
        rates_index=engine.rates_index,
    )
    assert report.outcomes == {"indexed": 3}
    engine.client.indices.refresh(index=engine.rates_index)
    ours = {"terms": {"currency.symbol": symbols}}

    def search(query: dict, **body: object) -> dict:
        full = {"query": {"bool": {"filter": [ours, query]}}, "size": 10, **body}
        return engine.client.search(index=engine.rates_index, body=full)

    in_range = search({"range": {"currency.rate": {"gte": 1, "lt": 100}}})
    assert [hit["_id"] for hit in in_range["hits"]["hits"]] == [symbols[0]]
    stats = search({"match_all": {}}, aggs={"rate": {"stats": {"field": "currency.rate"}}})["aggregations"]["rate"]
    assert stats["min"] == float("0.0000012345678901")
    assert stats["max"] == 155.25
    assert abs(stats["avg"] - (1.0856 + 0.0000012345678901 + 155.25) / 3) < 1e-9
    exact = search({"term": {"currency.rate.exact": "0.0000012345678901"}})
    assert [hit["_source"]["currency"]["rate"] for hit in exact["hits"]["hits"]] == ["0.0000012345678901"]


def test_a_document_the_engine_refuses_fails_only_its_message_then_is_dead_lettered(engine: EngineUnderTest) -> None:
    """A foreign producer's 1e400 is a finite decimal but no double: the engine refuses it, other messages pass."""
    table = TableModel()
    table.put(f"G{uuid.uuid4().hex[:8]}", Decimal("1.5"))
    (good,) = table.changes()
    bad_symbol = f"B{uuid.uuid4().hex[:8]}"
    bad = good._replace(id=uuid.uuid4().hex, data={"symbol": bad_symbol, "rate": "1e400"}, new=None)
    dead: list[tuple[str, str]] = []

    def deliver(receive_count: int) -> dict:
        messages = [InboundMessage("bad", bad.to_json(), receive_count), InboundMessage("good", good.to_json())]
        return consume(
            messages,
            engine.sink,
            events_index=engine.events_index,
            rates_index=engine.rates_index,
            dead_letter=lambda body, reason: dead.append((body, reason)),
            max_receives=5,
        ).outcomes

    assert deliver(1) == {"failed": 1, "indexed": 1}
    assert dead == []
    assert deliver(5) == {"dead_lettered": 1, "duplicate": 1}
    ((body, reason),) = dead
    assert body == bad.to_json()
    assert "400" in reason
    assert "currency.rate" in reason
    assert engine.current_rates([bad.symbol, good.symbol]) == {good.symbol: Decimal("1.5")}


class CountingEngine:
    """The real engine adapter, counting the calls that change cluster state."""

    def __init__(self, engine: object) -> None:
        self._engine = engine
        self.writes: list[str] = []

    def __getattr__(self, name: str) -> object:
        call = getattr(self._engine, name)
        if name in ("put_index_template", "create_index"):

            def counted(*args: object, **kwargs: object) -> object:
                self.writes.append(f"{name} {args[0]}")
                return call(*args, **kwargs)

            return counted
        return call


def test_a_later_cold_start_changes_nothing_on_the_engine(engine: EngineUnderTest) -> None:
    run = uuid.uuid4().hex[:8]
    first, second = CountingEngine(engine.sink.search_engine), CountingEngine(engine.sink.search_engine)
    SearchSink(first, f"warm-{run}-events", f"warm-{run}-rates").ensure_indices(deadline=None)  # type: ignore[arg-type]
    assert len(first.writes) == 4
    SearchSink(second, f"warm-{run}-events", f"warm-{run}-rates").ensure_indices(deadline=None)  # type: ignore[arg-type]
    assert second.writes == []
    stored = engine.client.indices.get_index_template(name=f"warm-{run}-events-template")
    assert stored["index_templates"][0]["index_template"]["_meta"]["managed_by"] == "currencies"
