"""Unit tests for the janitor that retires idle Pushgateway groups (chalicelib/observability/janitor.py).

All against `FakeGateway` (tests/unit/test_metrics_push.py), which renders every PUT through the exposition
format into the gateway's JSON shape and parses it back with pushgateway.py's `_group`, as the real gateway
would be read. The invariant under test: the exact all-time total of a function, the sum of its live groups
(those not already folded and awaiting their delete) and its retired group, never changes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from chalicelib.observability import metrics
from chalicelib.observability.janitor import (
    PENDING_DELETE,
    QUEUES,
    RETIRED,
    RetiredTotals,
    plan,
    push_queue_depths,
    retire_idle_groups,
    tidy,
)
from chalicelib.observability.pushgateway import Group, _group
from tests.unit.test_metrics_push import (
    Clock,
    FakeGateway,
    GatewayDown,
    Values,
    add_up,
    always,
    entry_values,
    gateway_payload,
    in_turn,
    never,
    recording,
)

JANITOR_LOG = "chalicelib.observability.janitor"
IDLE_S = 60.0
OUTCOMES = ("indexed", "failed")
OBSERVATIONS = (0.25, 1.0, 3.0, 8.0)  # exact in binary: sums compare exactly
MESSAGES = "currencies_consumer_messages_total"
RETIRED_MESSAGES = "currencies_retired_consumer_messages_total"
LAG = "currencies_stage_lag_seconds"


def container_registry(counts: Mapping[str, int], observations: list[float]) -> CollectorRegistry:
    """A container's registry as it pushes it: a counter, a histogram, and a gauge that must never be folded."""
    registry = CollectorRegistry()
    messages = Counter("currencies_consumer_messages", "Messages handled.", ["outcome"], registry=registry)
    for outcome, n in counts.items():
        messages.labels(outcome).inc(n)
    lag = Histogram(LAG, "Stage lag.", ["stage"], buckets=(0.5, 2, 5), registry=registry)
    for value in observations:
        lag.labels("table_to_stream").observe(value)
    Gauge("currencies_test_level", "A gauge.", registry=registry).set(5)
    return registry


def push_group(
    fake: FakeGateway,
    clock: Clock,
    function: str,
    instance: str,
    at: float,
    *,
    counts: Mapping[str, int] | None = None,
    observations: list[float] | None = None,
) -> None:
    clock.now = at
    registry = container_registry({"indexed": 1} if counts is None else counts, observations or [])
    fake.replace({"function": function, "instance": instance}, registry, 1.0)


def put_retired(fake: FakeGateway, function: str, totals: RetiredTotals) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(totals.collector())
    fake.replace({"function": function, "instance": RETIRED}, registry, 1.0)


def live_values(fake: FakeGateway, function: str, *, skip: Mapping[str, float] | None = None) -> Values:
    """The function's container groups (not retired, not queues, not in `skip`), added up."""
    return add_up(
        *(
            entry_values(entry)
            for entry in fake.entries.values()
            if entry["labels"].get("function") == function
            and entry["labels"]["instance"] not in (RETIRED, QUEUES, *(skip or {}))
        )
    )


def retired_values(fake: FakeGateway, function: str) -> Values:
    return entry_values(fake.entry(function, RETIRED), unretire=True)


def pending(fake: FakeGateway, function: str) -> dict[str, float]:
    """The retired group's pending deletes as the gateway holds them: instance -> push time."""
    family = (fake.entry(function, RETIRED) or {}).get(PENDING_DELETE, {"metrics": []})
    return {m["labels"]["retired_instance"]: float(m["value"]) for m in family["metrics"]}


def totals_values(totals: RetiredTotals) -> Values:
    """What a RetiredTotals would put in the gateway, under the live names."""
    scratch = FakeGateway()
    put_retired(scratch, "scratch", totals)
    return retired_values(scratch, "scratch")


def groups_retired() -> float:
    return metrics.REGISTRY.get_sample_value("currencies_metrics_groups_retired_total") or 0.0


def instances(groups: list[Group]) -> list[str]:
    return [group.labels["instance"] for group in groups]


def messages(outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (MESSAGES, (("outcome", outcome),))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeGateway:
    return FakeGateway(clock)


# --- RetiredTotals --------------------------------------------------------------------------------------------------


def test_add_sums_live_groups_under_the_retired_names(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 0, counts={"indexed": 2, "failed": 1}, observations=[0.25, 3.0])
    push_group(fake, clock, "f", "c2", 0, counts={"indexed": 5}, observations=[8.0])
    totals = RetiredTotals()
    for group in fake.groups(1.0):
        totals.add(group, renamed=True)

    assert set(totals.counters) == {RETIRED_MESSAGES}
    assert dict(totals.counters[RETIRED_MESSAGES]) == {(("outcome", "failed"),): 1.0, (("outcome", "indexed"),): 7.0}
    lag = totals.histograms["currencies_retired_stage_lag_seconds"][(("stage", "table_to_stream"),)]
    assert lag.buckets == {"0.5": 1.0, "2": 1.0, "5": 2.0, "+Inf": 3.0}
    assert (lag.count, lag.sum) == (3.0, 11.25)
    assert totals.help[RETIRED_MESSAGES] == "Messages handled."
    assert totals.pending_delete == {}


def test_add_keeps_retired_names_and_reads_the_pending_deletes() -> None:
    totals = RetiredTotals()
    totals.add(_group(gateway_payload()["data"][3]), renamed=False)
    assert dict(totals.counters["currencies_retired_sns_publishes_total"]) == {(("outcome", "published"),): 5.0}
    assert totals.pending_delete == {"0123abcd": 1795780374.0011017}


def test_add_ignores_gauges_and_other_projects_families() -> None:
    registry = CollectorRegistry()
    Counter("process_cpu_seconds", "Not ours.", registry=registry).inc(3)
    Gauge("currencies_queue_messages", "A gauge.", ["queue"], registry=registry).labels("consumer").set(4)
    fake = FakeGateway()
    fake.replace({"function": "f", "instance": "c1"}, registry, 1.0)
    totals = RetiredTotals()
    totals.add(fake.groups(1.0)[0], renamed=True)
    assert (dict(totals.counters), dict(totals.histograms)) == ({}, {})


_group_contents = st.tuples(
    st.dictionaries(st.sampled_from(OUTCOMES), st.integers(min_value=0, max_value=5)),
    st.lists(st.sampled_from(OBSERVATIONS), max_size=3),
)


@given(
    st.lists(_group_contents, min_size=1, max_size=4),
    st.dictionaries(st.text("abc0", min_size=1), st.integers(0, 10**9)),
)
def test_retired_totals_survive_a_trip_through_the_gateway(
    contents: list[tuple[dict[str, int], list[float]]], pending_delete: dict[str, int]
) -> None:
    clock = Clock()
    fake = FakeGateway(clock)
    for n, (counts, observations) in enumerate(contents):
        push_group(fake, clock, "f", f"c{n}", 0, counts=counts, observations=observations)
    folded = RetiredTotals()
    for group in fake.groups(1.0):
        folded.add(group, renamed=True)
    folded.pending_delete.update({instance: float(at) for instance, at in pending_delete.items()})

    put_retired(fake, "f", folded)
    again = RetiredTotals()
    again.add(_group(fake.entry("f", RETIRED) or {}), renamed=False)
    assert again.counters == folded.counters
    assert again.histograms == folded.histograms
    assert again.pending_delete == folded.pending_delete
    assert retired_values(fake, "f") == live_values(fake, "f")


# --- plan ------------------------------------------------------------------------------------------------------------


def test_plan_folds_only_groups_idle_longer_than_the_bound(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "idle", 0, counts={"indexed": 3}, observations=[1.0])
    push_group(fake, clock, "f", "at-the-bound", 40)
    push_group(fake, clock, "f", "recent", 90)
    [step] = plan(fake.groups(1.0), now=100, idle_after_s=IDLE_S)

    assert (step.function, step.changed) == ("f", True)
    assert instances(step.folded) == instances(step.delete) == ["idle"]
    assert step.totals.pending_delete == {"idle": 0.0}
    assert totals_values(step.totals) == entry_values(fake.entry("f", "idle"))


def test_plan_leaves_recent_groups_alone(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 50)
    assert plan(fake.groups(1.0), now=100, idle_after_s=IDLE_S) == []


def test_plan_never_folds_the_retired_or_the_queues_group(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", RETIRED, 0)  # counters under live names: would fold if it were taken for a container
    push_group(fake, clock, "f", QUEUES, 0)
    assert plan(fake.groups(1.0), now=10**9, idle_after_s=IDLE_S) == []


def test_plan_adds_counters_and_histograms_exactly_onto_the_retired_group(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c0", 0, counts={"indexed": 4, "failed": 1}, observations=[0.25, 8.0])
    retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.0)
    push_group(fake, clock, "f", "c1", 100, counts={"indexed": 2}, observations=[1.0, 1.0, 3.0])
    push_group(fake, clock, "f", "c2", 110, counts={"failed": 7}, observations=[])
    push_group(fake, clock, "g", "c1", 110, counts={"indexed": 9}, observations=[0.25])
    before = add_up(retired_values(fake, "f"), live_values(fake, "f"))

    steps = {step.function: step for step in plan(fake.groups(1.0), now=1000, idle_after_s=IDLE_S)}
    assert instances(steps["f"].folded) == ["c1", "c2"]
    assert totals_values(steps["f"].totals) == before
    lag = steps["f"].totals.histograms["currencies_retired_stage_lag_seconds"][(("stage", "table_to_stream"),)]
    assert lag.buckets == {"0.5": 1.0, "2": 3.0, "5": 4.0, "+Inf": 5.0}
    assert (lag.count, lag.sum) == (5.0, 13.25)
    assert totals_values(steps["g"].totals) == live_values(fake, "g")  # each function into its own retired group


def test_plan_drops_pending_entries_whose_group_is_gone(fake: FakeGateway, clock: Clock) -> None:
    totals = RetiredTotals()
    totals.counters[RETIRED_MESSAGES][(("outcome", "indexed"),)] = 6
    totals.pending_delete["gone"] = 5.0
    put_retired(fake, "f", totals)
    [step] = plan(fake.groups(1.0), now=1000, idle_after_s=IDLE_S)

    assert (step.changed, step.folded, step.delete) == (True, [], [])
    assert step.totals.pending_delete == {}
    assert totals_values(step.totals) == retired_values(fake, "f")


def test_plan_deletes_a_pending_group_still_present_without_folding_it_again(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 0, counts={"indexed": 3})
    fake.fail_delete = always
    retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.0)
    assert pending(fake, "f") == {"c1": 0.0}
    folded_once = retired_values(fake, "f")

    [step] = plan(fake.groups(1.0), now=200, idle_after_s=IDLE_S)
    assert (step.changed, step.folded, instances(step.delete)) == (False, [], ["c1"])
    assert totals_values(step.totals) == folded_once == entry_values(fake.entry("f", "c1"))

    push_group(fake, clock, "f", "c2", 0, counts={"failed": 2})
    [step] = plan(fake.groups(1.0), now=200, idle_after_s=IDLE_S)
    assert (step.changed, instances(step.folded), instances(step.delete)) == (True, ["c2"], ["c1", "c2"])
    assert totals_values(step.totals) == add_up(folded_once, entry_values(fake.entry("f", "c2")))


def test_plan_logs_a_pending_group_that_pushed_again_and_deletes_it_unfolded(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 0)
    fake.fail_delete = always
    retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.0)
    push_group(fake, clock, "f", "c1", 150, counts={"indexed": 9})  # the container came back under its retired identity

    with recording(JANITOR_LOG) as records:
        [step] = plan(fake.groups(1.0), now=160, idle_after_s=IDLE_S)
    assert (step.folded, instances(step.delete)) == ([], ["c1"])
    assert [r.instance for r in records if r.levelno == logging.ERROR] == ["c1"]  # type: ignore[attr-defined]


# --- retire_idle_groups --------------------------------------------------------------------------------------------


def test_retire_puts_the_fold_before_deleting_then_clears_the_pending_entries(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 0, counts={"indexed": 2}, observations=[1.0])
    push_group(fake, clock, "f", "c2", 10, counts={"failed": 3}, observations=[8.0])
    push_group(fake, clock, "f", "c3", 90)
    total, before = live_values(fake, "f"), groups_retired()
    fake.calls.clear()
    fake.timeouts.clear()

    assert retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.5) == 2
    retired = {"function": "f", "instance": RETIRED}
    assert fake.calls == [
        ("groups", {}),
        ("replace", retired),
        ("delete", {"function": "f", "instance": "c1"}),
        ("delete", {"function": "f", "instance": "c2"}),
        ("replace", retired),
    ]
    assert set(fake.timeouts) == {1.5}
    assert groups_retired() - before == 2.0
    assert (fake.entry("f", "c1"), fake.entry("f", "c2")) == (None, None)
    assert pending(fake, "f") == {}
    assert add_up(live_values(fake, "f"), retired_values(fake, "f")) == total
    assert retired_values(fake, "f")[messages("indexed")] == 2.0


def test_a_failed_put_deletes_nothing(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 0)
    entries, before = dict(fake.entries), groups_retired()
    fake.fail_replace = always
    with pytest.raises(GatewayDown):
        retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.0)
    assert [call for call, _ in fake.calls if call == "delete"] == []
    assert fake.entries == entries
    assert groups_retired() == before


def test_a_failed_put_for_one_function_still_retires_the_others(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 0)
    push_group(fake, clock, "g", "c2", 0)
    fake.fail_replace = lambda key: key["function"] == "f"
    with pytest.raises(GatewayDown):
        retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.0)
    assert fake.entry("f", "c1") is not None  # untouched, retried next run
    assert fake.entry("g", "c2") is None
    assert retired_values(fake, "g")[messages("indexed")] == 1.0


def test_a_failed_delete_stays_pending_and_the_next_run_does_not_count_it_twice(
    fake: FakeGateway, clock: Clock
) -> None:
    push_group(fake, clock, "f", "c1", 0, counts={"indexed": 4}, observations=[3.0])
    push_group(fake, clock, "f", "c2", 0, counts={"indexed": 1})
    total, before = live_values(fake, "f"), groups_retired()
    fake.fail_delete = lambda key: key["instance"] == "c1"

    with recording(JANITOR_LOG) as records:
        assert retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.0) == 2
    assert [r.getMessage() for r in records if r.levelno == logging.ERROR] == ["could not delete a retired group"]
    assert fake.entry("f", "c1") is not None
    assert fake.entry("f", "c2") is None
    assert pending(fake, "f") == {"c1": 0.0}
    assert retired_values(fake, "f") == total
    assert add_up(live_values(fake, "f", skip=pending(fake, "f")), retired_values(fake, "f")) == total

    fake.fail_delete = never
    fake.calls.clear()
    fake.timeouts.clear()
    assert retire_idle_groups(fake, now=200, idle_after_s=IDLE_S, timeout_s=1.0) == 0
    assert fake.calls == [
        ("groups", {}),
        ("delete", {"function": "f", "instance": "c1"}),
        ("replace", {"function": "f", "instance": RETIRED}),
    ]
    assert fake.entry("f", "c1") is None
    assert pending(fake, "f") == {}
    assert retired_values(fake, "f") == total
    assert groups_retired() - before == 2.0


def test_a_failed_put_clearing_pending_entries_is_logged_and_mended_next_run(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "f", "c1", 0, counts={"indexed": 4})
    total = live_values(fake, "f")
    fake.fail_replace = in_turn(False, True)
    with recording(JANITOR_LOG) as records:
        assert retire_idle_groups(fake, now=100, idle_after_s=IDLE_S, timeout_s=1.0) == 1
    assert [r.getMessage() for r in records if r.levelno == logging.WARNING] == ["could not clear pending deletes"]
    assert (fake.entry("f", "c1"), pending(fake, "f")) == (None, {"c1": 0.0})

    assert retire_idle_groups(fake, now=200, idle_after_s=IDLE_S, timeout_s=1.0) == 0
    assert pending(fake, "f") == {}
    assert retired_values(fake, "f") == total


# --- tidy and push_queue_depths ----------------------------------------------------------------------------------


@pytest.fixture
def queue_gauge() -> Iterator[None]:
    """Restore the global queue-depth gauge after a test sets it."""
    queues = ("consumer", "dead_letter")
    saved = {q: metrics.REGISTRY.get_sample_value("currencies_queue_messages", {"queue": q}) for q in queues}
    yield
    for queue, value in saved.items():
        if value is None:
            with contextlib.suppress(KeyError):
                metrics.QUEUE_MESSAGES.remove(queue)
        else:
            metrics.QUEUE_MESSAGES.labels(queue).set(value)


def sample_depths(order: list[str]) -> dict[str, int]:
    order.append("sampled")
    depths = {"consumer": 4, "dead_letter": 1}
    for queue, depth in depths.items():
        metrics.QUEUE_MESSAGES.labels(queue).set(depth)
    return depths


@pytest.mark.usefixtures("queue_gauge")
def test_tidy_samples_then_pushes_the_depths_then_retires(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "api", "c1", 0)
    order: list[str] = []
    fake.calls.clear()
    fake.timeouts.clear()
    retired = tidy(
        fake,
        function="janitor",
        idle_after_s=IDLE_S,
        sample_queues=lambda: sample_depths(order),
        timeout_s=0.5,
        now=lambda: 100.0,
    )
    assert retired == 1
    assert order == ["sampled"]
    assert fake.calls[:2] == [("replace", {"function": "janitor", "instance": QUEUES}), ("groups", {})]
    assert set(fake.timeouts) == {0.5}
    queues = fake.entry("janitor", QUEUES) or {}
    families = {name for name, family in queues.items() if isinstance(family, dict) and "metrics" in family}
    assert families == {"currencies_queue_messages", "push_time_seconds", "push_failure_time_seconds"}
    depths = {m["labels"]["queue"]: m["value"] for m in queues["currencies_queue_messages"]["metrics"]}
    assert depths == {"consumer": "4", "dead_letter": "1"}
    assert fake.entry("api", "c1") is None


@pytest.mark.usefixtures("queue_gauge")
def test_tidy_retires_even_when_the_depths_cannot_be_pushed_then_raises(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "api", "c1", 0)
    total = live_values(fake, "api")
    fake.fail_replace = lambda key: key["instance"] == QUEUES
    with pytest.raises(GatewayDown):
        tidy(
            fake,
            function="janitor",
            idle_after_s=IDLE_S,
            sample_queues=lambda: sample_depths([]),
            timeout_s=1.0,
            now=lambda: 100.0,
        )
    assert fake.entry("api", "c1") is None
    assert retired_values(fake, "api") == total


@pytest.mark.usefixtures("queue_gauge")
def test_tidy_uses_its_clock_for_idleness(fake: FakeGateway, clock: Clock) -> None:
    push_group(fake, clock, "api", "c1", 0)
    assert tidy(fake, function="janitor", idle_after_s=IDLE_S, sample_queues=dict, timeout_s=1.0, now=lambda: 30.0) == 0
    assert fake.entry("api", "c1") is not None


@pytest.mark.usefixtures("queue_gauge")
def test_the_queues_group_is_replaced_and_never_retired(fake: FakeGateway, clock: Clock) -> None:
    sample_depths([])
    push_queue_depths(fake, "janitor", 1.0)
    metrics.QUEUE_MESSAGES.labels("consumer").set(9)
    push_queue_depths(fake, "janitor", 1.0)
    assert len(fake.entries) == 1
    depths = {
        m["labels"]["queue"]: m["value"]
        for m in (fake.entry("janitor", QUEUES) or {})["currencies_queue_messages"]["metrics"]
    }
    assert depths == {"consumer": "9", "dead_letter": "1"}
    assert retire_idle_groups(fake, now=10**9, idle_after_s=IDLE_S, timeout_s=1.0) == 0
    assert fake.entry("janitor", QUEUES) is not None


# --- the property: nothing is lost or counted twice, whatever fails ----------------------------------------------

_runs = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=80),  # how far the clock moves before the run
        st.lists(st.booleans(), max_size=4),  # which PUTs of the run fail, in turn
        st.lists(st.booleans(), max_size=6),  # which DELETEs of the run fail, in turn
    ),
    min_size=1,
    max_size=6,
)
_functions = st.dictionaries(
    st.sampled_from(("f1", "f2")),
    st.lists(st.tuples(_group_contents, st.integers(min_value=0, max_value=100)), min_size=1, max_size=4),
    min_size=1,
)


@given(_functions, _runs)
def test_live_plus_retired_never_changes(
    functions: dict[str, list[tuple[tuple[dict[str, int], list[float]], int]]],
    runs: list[tuple[int, list[bool], list[bool]]],
) -> None:
    clock = Clock()
    fake = FakeGateway(clock)
    for function, groups in functions.items():
        for n, ((counts, observations), at) in enumerate(groups):
            push_group(fake, clock, function, f"c{n}", at, counts=counts, observations=observations)
        push_group(fake, clock, function, QUEUES, 0)  # never folded, never deleted
    totals = {function: live_values(fake, function) for function in functions}
    queues = {function: fake.entry(function, QUEUES) for function in functions}
    before = groups_retired()

    now = 100.0
    for advance, put_failures, delete_failures in runs:
        now += advance
        fake.fail_replace, fake.fail_delete = in_turn(*put_failures), in_turn(*delete_failures)
        with contextlib.suppress(GatewayDown):
            retire_idle_groups(fake, now=now, idle_after_s=IDLE_S, timeout_s=1.0)
        for function, total in totals.items():
            awaiting_delete = pending(fake, function)
            assert add_up(live_values(fake, function, skip=awaiting_delete), retired_values(fake, function)) == total

    fake.fail_replace = fake.fail_delete = never
    retire_idle_groups(fake, now=now + 10_000, idle_after_s=IDLE_S, timeout_s=1.0)
    for function, total in totals.items():
        assert live_values(fake, function) == {}
        assert pending(fake, function) == {}
        assert retired_values(fake, function) == total
        assert fake.entry(function, QUEUES) == queues[function]
    assert groups_retired() - before == sum(len(groups) for groups in functions.values())
