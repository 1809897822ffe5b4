"""The freshness benchmark's pure parts: write identities, the pool, visibility, percentiles, deltas, verdict."""

from __future__ import annotations

import math
import re

import pytest

from bench.freshness import (
    Run,
    Write,
    cpu_use,
    histogram_delta,
    mark_visible,
    markdown,
    percentiles,
    pool_size,
    seconds_of,
    summarise,
    symbols,
    unique_rate,
    verdict,
)
from bench.report import machine
from chalicelib.api.currency import RATE_TEXT_PATTERN, SYMBOL_PATTERN
from chalicelib.observability.metrics import STAGES


def test_pool_symbols_are_distinct_and_valid_and_every_rate_unique_and_valid() -> None:
    names = ["".join(name) for name in symbols()]
    assert len(names) == len(set(names)) == 26**3
    assert all(re.fullmatch(SYMBOL_PATTERN, name) for name in names[:100] + names[-100:])
    rates = [unique_rate(n, 42) for n in range(5000)]
    assert len(set(rates)) == 5000
    assert all(re.fullmatch(RATE_TEXT_PATTERN, rate) and not rate.endswith("0") for rate in rates)
    assert unique_rate(3, 1) != unique_rate(3, 2)


@pytest.mark.parametrize(
    ("rate", "seconds", "size"),
    [(50.0, 60.0, 1000), (20.0, 10.0, 200), (5.0, 3.0, 15), (50.0, 600.0, 1000), (0.01, 1.0, 1)],
)
def test_the_pool_holds_twenty_seconds_of_writes_but_no_more_than_the_run_writes(
    rate: float, seconds: float, size: int
) -> None:
    assert pool_size(rate, seconds) == size


def _answered(symbol: str, revision: int, n: int) -> Write:
    return Write(symbol, unique_rate(n, 7), scheduled=n, answered=n + 0.1, status=200, revision=revision)


def test_a_rates_document_makes_its_write_and_every_earlier_one_of_the_symbol_visible() -> None:
    first, second, third = (_answered("AAA", revision, n) for n, revision in enumerate((2, 3, 4)))
    other = _answered("BBB", 2, 3)
    by_rate = {entry.rate: entry for entry in (first, second, third, other)}
    pending = [first, second, third, other]

    mark_visible(pending, {"AAA": second.rate, "BBB": "1.0000071"}, by_rate, at=5.0)  # BBB: its set-up rate

    assert (first.visible, second.visible, third.visible, other.visible) == (5.0, 5.0, None, None)
    mark_visible(pending, {"AAA": third.rate, "BBB": other.rate}, by_rate, at=6.0)
    assert (first.visible, second.visible, third.visible, other.visible) == (5.0, 5.0, 6.0, 6.0)


def test_a_rate_of_another_symbol_or_of_an_unanswered_write_marks_nothing() -> None:
    entry = _answered("AAA", 2, 0)
    elsewhere = _answered("BBB", 9, 1)
    in_flight = Write("AAA", unique_rate(2, 7), scheduled=2.0)  # sent, not yet answered: revision unknown
    by_rate = {write.rate: write for write in (entry, elsewhere, in_flight)}

    mark_visible([entry], {"AAA": elsewhere.rate}, by_rate, at=1.0)
    mark_visible([entry], {"AAA": in_flight.rate}, by_rate, at=1.0)
    mark_visible([entry], {}, by_rate, at=1.0)
    assert entry.visible is None


def test_percentiles_stay_within_the_values() -> None:
    values = [n / 100 for n in range(1, 101)]
    result = percentiles(values)
    assert result["p50"] == pytest.approx(0.505)
    assert result["p99"] == pytest.approx(0.99, abs=0.001)
    assert result["max"] == 1.0
    assert result["count"] == 100
    assert math.isnan(percentiles([])["p99"])


def test_histogram_delta_counts_only_what_the_run_added() -> None:
    inf = float("inf")
    before = {"table_to_stream": {0.1: 10.0, 0.5: 10.0, inf: 10.0, -1.0: 0.5}}
    after = {
        "table_to_stream": {0.1: 60.0, 0.5: 109.0, inf: 110.0, -1.0: 20.5},
        "stream_to_consumer": {0.1: 0.0, 0.5: 0.0, inf: 0.0, -1.0: 0.0},
    }
    delta = histogram_delta(before, after)
    assert delta["table_to_stream"] == {"count": 100, "mean_s": 0.2, "p50_le_s": 0.1, "p99_le_s": 0.5}
    assert delta["stream_to_consumer"]["count"] == 0
    assert delta["stream_to_consumer"]["p99_le_s"] is None


@pytest.mark.parametrize(("text", "seconds"), [("1s", 1.0), ("500ms", 0.5), ("2.5s", 2.5), ("1m", 60.0)])
def test_engine_time_values(text: str, seconds: float) -> None:
    assert seconds_of(text) == seconds


def test_engine_time_value_refused() -> None:
    with pytest.raises(ValueError, match="not a time value"):
        seconds_of("-1")


def test_cpu_use_is_per_core_for_the_parts_and_of_all_cores_for_the_machine() -> None:
    before = {"moto": 10.0, "this_process": 5.0, "machine_total": 100.0, "machine_busy": 50.0}
    after = {"moto": 18.5, "this_process": 8.0, "machine_total": 120.0, "machine_busy": 65.0}
    assert cpu_use(before, after, wall_s=10.0) == {
        "moto_pct_of_core": 85,
        "this_process_pct_of_core": 30,
        "machine_busy_pct": 75,
    }


def _result(searchable_after: list[float]) -> dict:
    run = Run(pool=["AAA", "AAB", "AAC"])
    for n, delay in enumerate(searchable_after):
        write = Write(run.pool[n % 3], unique_rate(n, 7), scheduled=float(n), sent=n + 0.001, answered=n + 0.05)
        write.status = 201 if n == 0 else 200
        write.visible = write.answered + delay / 4
        write.searchable = write.answered + delay
        run.writes.append(write)
    refused = Write("ZZZ", unique_rate(99, 7), scheduled=99.0, sent=99.0, answered=99.1, status=400)
    run.writes.append(refused)
    stage = {"count": len(searchable_after), "mean_s": 0.1, "p50_le_s": 0.1, "p99_le_s": 0.25}
    result = summarise(
        run,
        rate_per_s=20.0,
        seconds=1.0,
        written_s=1.0,
        set_up_s=2.0,
        stages=dict.fromkeys(STAGES, stage),
        end_to_end={"": stage},
        cpu_while_writing={"moto_pct_of_core": 87, "this_process_pct_of_core": 31, "machine_busy_pct": 99},
        queue_depth_max=42,
    )
    configuration = {
        "stream_poll_idle_s": 0.2,
        "sqs_long_poll_s": 1,
        "consumer_batch_size": 10,
        "refresh_interval": "1s",
        "refresh_set_on_index": False,
    }
    result = {
        "mode": "quick",
        "machine": machine(),
        "engine": "elasticsearch",
        "configuration": configuration,
        **result,
    }
    result["verdict"] = verdict(result)
    return result


def test_summary_and_verdict_follow_the_measured_delays() -> None:
    fast = _result([0.5 + n / 100 for n in range(20)])
    assert fast["accepted"] == 20
    assert fast["created"] == 1
    assert fast["pool_symbols"] == 3
    assert fast["refused_or_failed"] == 1
    assert fast["never_searchable"] == 0
    assert fast["answer_to_searchable_s"]["max"] == pytest.approx(0.69)
    assert fast["verdict"]["polling_plus_refresh_s"] == pytest.approx(1.2)
    assert fast["verdict"]["met"] is True
    slow = _result([2.5 + n / 100 for n in range(20)])
    assert slow["verdict"]["met"] is False
    assert slow["verdict"]["p99_above_s"] > 1.0


def test_markdown_names_every_stage_the_configuration_and_the_command() -> None:
    text = markdown(_result([0.8] * 10), "python -m bench.freshness")
    for stage in STAGES:
        assert f"| {stage} |" in text
    assert "refresh interval 1s (the engine default" in text
    assert "target < 1 s above: met" in text
    assert "Command: `python -m bench.freshness`" in text
    assert "one of 3 symbols in turn (each rewritten every 0.15 s)" in text
    assert "1 write(s) created a symbol instead" in text
    assert "cores were 99 % busy" in text
    assert "moto server (one Python process: about 100 % at most) 87 %" in text
    assert "the engine" not in text.split("While writing")[1].split("\n")[0]  # not measured: not claimed
    assert "held at most 42 message(s)" in text
    assert "written once" in markdown(_result([0.8] * 2), "python -m bench.freshness")  # 2 writes + 1 refused
    assert all(line.count("|") in {0, 6, 7} for line in text.splitlines() if line.startswith("|"))
