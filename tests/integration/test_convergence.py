"""The current-state index converges to the table whatever the delivery, on every real engine.

A random sequence of writes and deletes over a few symbols is played against a model
of the store (`currencies_local.synthetic.TableModel`), turned into stream records and
then into change messages by the production code. Those messages are
delivered to the production consumer shuffled, duplicated and split into random
batches. Afterwards the rates index must equal the table, and the events index must
hold each change exactly once.
"""

from __future__ import annotations

import random
import time
import uuid
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.consumer.indexer import InboundMessage, consume
from chalicelib.sinks.sink import SearchSink
from chalicelib.stream.changes import Change
from currencies_local.synthetic import TableModel
from tests.integration.engines import EngineUnderTest

SYMBOLS = 3


operations = st.lists(
    st.tuples(
        st.integers(0, SYMBOLS - 1),
        st.one_of(st.none(), st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations, seed=st.integers(0, 2**32 - 1))
def test_any_delivery_order_converges_to_the_table(engine: EngineUnderTest, ops: list, seed: int) -> None:
    run = uuid.uuid4().hex[:10]  # fresh symbols per example: the indices are shared
    names = [f"T{run}{k}" for k in range(SYMBOLS)]
    table = TableModel()
    for k, rate in ops:
        if rate is None:
            table.delete(names[k])
        else:
            table.put(names[k], rate)
    changes = table.changes()

    rng = random.Random(seed)
    deliveries = [change for change in changes for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    position = 0
    while position < len(deliveries):
        size = rng.randint(1, 10)
        batch = [
            InboundMessage(f"m{position + i}", c.to_json())
            for i, c in enumerate(deliveries[position : position + size])
        ]
        report = consume(batch, engine.sink, events_index=engine.events_index, rates_index=engine.rates_index)
        assert report.failed_ids == [], report.outcomes
        position += size

    assert engine.current_rates(names) == table.rates()
    assert engine.existing_event_ids([c.id for c in changes]) == {c.id for c in changes}
    assert engine.count_events_for(names) == len(changes)


def test_a_delete_that_overtakes_its_insert_still_wins(engine: EngineUnderTest) -> None:
    """The REMOVE reaches an engine that never saw the symbol; the INSERT it deleted comes later."""
    symbol = f"T{uuid.uuid4().hex[:10]}"
    table = TableModel()
    table.put(symbol, Decimal("1.5"))
    table.delete(symbol)
    insert, remove = table.changes()
    for change in (remove, insert):
        report = consume([InboundMessage("m", change.to_json())], engine.sink,
                         events_index=engine.events_index, rates_index=engine.rates_index)  # fmt: skip
        assert report.failed_ids == []
    assert report.outcomes == {"stale": 1}
    assert engine.current_rates([symbol]) == {}


def test_a_change_redriven_long_after_a_delete_does_not_bring_the_symbol_back(engine: EngineUnderTest) -> None:
    """Days later, a redrive delivers the INSERT again, and an older MODIFY of a re-created symbol.

    The engine forgets what it deleted after `index.gc_deletes`; the test sets it to
    zero on its own indices so that "long after" is now.
    """
    run = uuid.uuid4().hex[:8]
    sink = SearchSink(engine.sink.search_engine, f"late-{run}-events", f"late-{run}-rates")
    sink.ensure_indices(deadline=None)
    rates_index = f"late-{run}-rates"
    engine.client.indices.put_settings(index=rates_index, body={"index.gc_deletes": "0s"})
    gone, back = f"G{run}", f"B{run}"
    table = TableModel()
    table.put(gone, Decimal("1.5"))
    table.delete(gone)
    table.put(back, Decimal("2.5"))
    table.delete(back)
    table.put(back, Decimal("3.5"))
    changes = table.changes()

    def deliver(change: Change) -> dict[str, int]:
        return consume([InboundMessage(change.id, change.to_json())], sink,
                       events_index=f"late-{run}-events", rates_index=rates_index).outcomes  # fmt: skip

    for change in changes:
        assert deliver(change) == {"indexed": 1}
    for _ in range(3):  # refreshes prune the engine's memory of deletes older than gc_deletes
        engine.client.indices.refresh(index=rates_index)
        time.sleep(0.5)
    late = [changes[0], changes[2]]  # gone's INSERT; back's first INSERT (rate 2.5)
    for change in late:
        deliver(change)
    assert engine.listed_rates(rates_index) == {back: "3.5"}
