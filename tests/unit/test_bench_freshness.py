"""The freshness benchmark's pure parts: write identities, percentiles, histogram deltas and the verdict."""

from __future__ import annotations

import math
import re

import pytest

from bench.freshness import (
    Run,
    Write,
    histogram_delta,
    markdown,
    percentiles,
    seconds_of,
    summarise,
    symbols,
    unique_rate,
    verdict,
)
from bench.report import machine
from chalicelib.api.currency import RATE_TEXT_PATTERN, SYMBOL_PATTERN
from chalicelib.observability.metrics import STAGES


def test_every_write_gets_a_new_valid_symbol_and_a_unique_valid_rate() -> None:
    names = ["".join(name) for name in symbols()]
    assert len(names) == len(set(names)) == 26**3
    assert all(re.fullmatch(SYMBOL_PATTERN, name) for name in names[:100] + names[-100:])
    rates = [unique_rate(n, 42) for n in range(5000)]
    assert len(set(rates)) == 5000
    assert all(re.fullmatch(RATE_TEXT_PATTERN, rate) and not rate.endswith("0") for rate in rates)
    assert unique_rate(3, 1) != unique_rate(3, 2)


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


def _result(searchable_after: list[float]) -> dict:
    run = Run()
    for n, delay in enumerate(searchable_after):
        write = Write(f"A{n:02d}", unique_rate(n, 7), scheduled=float(n), sent=n + 0.001, answered=n + 0.05)
        write.status = 201
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
        stages=dict.fromkeys(STAGES, stage),
        end_to_end={"": stage},
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
    assert all(line.count("|") in {0, 6, 7} for line in text.splitlines() if line.startswith("|"))
