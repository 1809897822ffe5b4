"""The consumer benchmark's pure parts: the bodies it POSTs, the run order, and what it concludes from runs."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from elasticsearch.helpers import expand_action

from bench.consumer import (
    BASELINE,
    DASH,
    TIMES,
    VARIANTS,
    action_lines,
    bound_statement,
    bulk_problems,
    envelopes,
    helper_actions,
    ndjson_batches,
    ratios,
    render_markdown,
    schedule,
    summarise,
)
from chalicelib.consumer.documents import Action, actions_for
from chalicelib.sinks.bulk import encode
from chalicelib.stream.bus import unwrap
from chalicelib.stream.changes import Change
from currencies_local.synthetic import random_table


def production_actions(changes: int = 40) -> list[list[Action]]:
    table = random_table(changes, ["AAA", "BBB", "CCC"], seed=3)
    return [
        actions_for(change, events_index="ev", rates_index="ra", ingested_at="2027-01-01T00:00:00Z")
        for change in table.changes()
    ]


def parsed_lines(body: bytes) -> list[Any]:
    assert body.endswith(b"\n")
    return [json.loads(line) for line in body.decode().splitlines()]


def test_envelopes_unwrap_to_the_same_changes() -> None:
    changes = random_table(20, ["AAA", "BBB"], seed=2).changes()
    bodies = envelopes(changes)
    assert [Change.from_json(unwrap(body)) for body in bodies] == changes
    assert all(json.loads(body)["Type"] == "Notification" for body in bodies)


def test_action_lines_say_what_the_production_encoder_says() -> None:
    """The limit must POST the same bulk items consume() sends (bytes may differ, meaning may not)."""
    for group in production_actions():
        for action in group:
            assert parsed_lines(action_lines(action)) == parsed_lines(encode(action))


def test_action_lines_carry_external_versions() -> None:
    versioned = Action("index", "ra", "AAA", {"currency": {"symbol": "AAA"}}, version=7)
    meta, document = parsed_lines(action_lines(versioned))
    assert meta == {"index": {"_index": "ra", "_id": "AAA", "version": 7, "version_type": "external"}}
    assert document == {"currency": {"symbol": "AAA"}}
    meta, _ = parsed_lines(action_lines(Action("create", "ev", "x", {})))
    assert meta == {"create": {"_index": "ev", "_id": "x"}}


@pytest.mark.parametrize("size", [1, 7, 10, 40, 100])
def test_ndjson_batches_split_by_change_and_keep_everything_in_order(size: int) -> None:
    per_change = production_actions(40)
    bodies = ndjson_batches(per_change, size)
    assert len(bodies) == -(-len(per_change) // size)
    expected = [action_lines(action) for group in per_change for action in group]
    assert b"".join(bodies) == b"".join(expected)
    for n, body in enumerate(bodies):
        changes_in_body = len(per_change[n * size : (n + 1) * size])
        assert len(parsed_lines(body)) == 4 * changes_in_body  # two actions per change, two lines each


def test_helper_actions_expand_to_the_same_bulk_items() -> None:
    per_change = production_actions(30)
    flat = [action for group in per_change for action in group]
    helper = helper_actions(per_change)
    assert len(helper) == len(flat)
    for action, item in zip(flat, helper, strict=True):
        meta, document = expand_action(item)
        assert [meta, document] == parsed_lines(action_lines(action))


def bulk_response(items: list[tuple[str, int, str | None]], *, errors: bool, took_first: bool = True) -> bytes:
    rendered = []
    for operation, status, error in items:
        result: dict[str, Any] = {"_index": "i", "_id": "x", "status": status}
        if error:
            result["error"] = {"type": error, "reason": "r"}
        rendered.append({operation: result})
    head = {"took": 3, "errors": errors} if took_first else {"errors": errors, "took": 3}
    return json.dumps({**head, "items": rendered}, separators=(",", ":")).encode()


@pytest.mark.parametrize("took_first", [True, False])  # OpenSearch writes `took` first, Elasticsearch `errors`
def test_clean_bulk_response_has_no_problems(took_first: bool) -> None:
    response = bulk_response([("create", 201, None), ("index", 201, None)], errors=False, took_first=took_first)
    assert bulk_problems(response) == Counter()


def test_bulk_problems_tell_stale_rates_from_real_errors() -> None:
    response = bulk_response(
        [
            ("create", 201, None),
            ("index", 409, "version_conflict_engine_exception"),
            ("index", 409, "version_conflict_engine_exception"),
            ("create", 409, "version_conflict_engine_exception"),
            ("index", 400, "strict_dynamic_mapping_exception"),
            ("create", 429, "es_rejected_execution_exception"),
        ],
        errors=True,
    )
    assert bulk_problems(response) == Counter(
        {
            "stale": 2,
            "409:version_conflict_engine_exception": 1,
            "400:strict_dynamic_mapping_exception": 1,
            "429:es_rejected_execution_exception": 1,
        }
    )


def test_schedule_interleaves_and_shuffles_reproducibly() -> None:
    plan = schedule(3, [10, 100], baseline=True, seed=5)
    assert plan == schedule(3, [10, 100], baseline=True, seed=5)
    assert len(plan) == 3 * (1 + 2 * len(VARIANTS))
    assert [r for r, _, _ in plan] == sorted(r for r, _, _ in plan)  # repetition by repetition
    for repetition in (1, 2, 3):
        runs = [(size, variant) for r, size, variant in plan if r == repetition]
        assert runs[0] == (1, BASELINE)
        assert [size for size, _ in runs[1:]] == [10] * len(VARIANTS) + [100] * len(VARIANTS)
        assert sorted(variant for size, variant in runs if size == 10) == sorted(VARIANTS)
    orders = {tuple(v for r, s, v in plan if s == 10 and r == rep) for rep in (1, 2, 3)}
    orders |= {tuple(v for r, s, v in schedule(3, [10], baseline=False, seed=s2) if r == 1) for s2 in range(20)}
    assert len(orders) > 1, "the variants' order is shuffled"
    assert all(variant != BASELINE for _, _, variant in schedule(2, [10], baseline=False, seed=1))


def run(variant: str, size: int, rate: float, python_us: float, engine_us: float | None, **extra: Any) -> dict:
    events = 1000
    seconds = events / rate
    engine_cpu = None if engine_us is None else engine_us * events / 1e6
    return {
        "engine": extra.get("engine", "elasticsearch"),
        "variant": variant,
        "batch_size": size,
        "repetition": extra.get("repetition", 1),
        "events": events,
        "seconds": seconds,
        "python_cpu_s": python_us * events / 1e6,
        "engine_cpu_s": engine_cpu,
        "indexed": events,
        "stale": extra.get("stale", 0),
        "events_per_second": rate,
        "python_us_per_event": python_us,
        "engine_us_per_event": engine_us,
    }


def test_summaries_are_medians_with_spread() -> None:
    runs = [run("ours", 10, rate, 300, 400, repetition=n) for n, rate in enumerate([900.0, 1100.0, 1000.0])]
    runs.append(run("limit_1", 10, 2000, 5, None))
    ours, limit = summarise(runs)[1], summarise(runs)[0]
    assert (limit["variant"], ours["variant"]) == ("limit_1", "ours")
    assert ours["events_per_second"] == {"median": 1000.0, "min": 900.0, "max": 1100.0, "runs": 3}
    assert ours["engine_us_per_event"]["median"] == pytest.approx(400)
    assert ours["python_cpu_per_wall_s"]["median"] == pytest.approx(0.3)  # 300 µs/event at 1,000 events/s
    assert limit["engine_us_per_event"] is None
    assert limit["engine_cpu_per_wall_s"] is None


def example_runs() -> list[dict]:
    return [
        run(BASELINE, 1, 200, 1800, 2900),
        run("ours", 10, 1300, 350, 450),
        run("limit_1", 10, 2600, 10, 440),
        run("limit_2", 10, 5200, 12, 430, stale=37),
        run("helpers_bulk", 10, 1200, 200, 450),
        run("ours", 1000, 5000, 140, 80),
        run("limit_1", 1000, 18000, 3, 78),
        run("limit_2", 1000, 20000, 4, 78),
        run("helpers_bulk", 1000, 8000, 70, 80),
    ]


def test_ratios_per_batch_size() -> None:
    result = ratios(summarise(example_runs()))["elasticsearch"]
    assert result["10"] == {"ours/limit_1": 0.5, "ours/limit_2": 0.25, "ours/baseline": 6.5}
    assert result["1000"]["ours/limit_1"] == pytest.approx(5000 / 18000, abs=1e-3)
    assert result["1000"]["ours/baseline"] == 25.0


def test_ratios_without_a_baseline_are_none() -> None:
    runs = [r for r in example_runs() if r["variant"] != BASELINE]
    assert ratios(summarise(runs))["elasticsearch"]["10"]["ours/baseline"] is None


def test_bound_statement_names_the_serial_sum_and_its_larger_part() -> None:
    statement = bound_statement(summarise(example_runs()), "elasticsearch", cores=2)
    assert "at batch 10, 350 µs of Python and 450 µs of engine CPU per event, taking turns" in statement
    assert "their sum bounds it; the larger is the engine" in statement
    assert "at batch 1000, 140 µs of Python and 80 µs of engine CPU per event" in statement
    assert "the larger is our Python" in statement
    assert "saturated" not in statement  # at 1,300 events/s: 0.46 + 0.59 core; at 5,000: 0.7 + 0.4


def test_bound_statement_says_when_the_cores_ran_out() -> None:
    busy = [run("ours", 100, 5000, 150, 250)]  # 0.75 + 1.25 = 2 cores busy
    assert "together 2.00 of 2 cores busy: the machine is saturated" in bound_statement(
        summarise(busy), "elasticsearch", cores=2
    )
    assert "saturated" not in bound_statement(summarise(busy), "elasticsearch", cores=4)


def test_bound_statement_without_engine_cpu() -> None:
    runs = [run("ours", 10, 1000, 300, None)]
    assert "engine CPU not measured" in bound_statement(summarise(runs), "elasticsearch", cores=2)


def result_of(runs: list[dict]) -> dict:
    summaries = summarise(runs)
    return {
        "mode": "quick",
        "command": "python -m bench.consumer --engine elasticsearch",
        "machine": {
            "date": "2027-01-01",
            "cpu": "Test CPU",
            "cores": 2,
            "memory_gb": 4.0,
            "python": "3.11.7",
            "packages": {"elasticsearch": "9.5.1", "moto": "5", "orjson": None},
        },
        "config": {"changes": 1000, "symbols": 200, "baseline_changes": 1000, "repetitions": 1},
        "engines": {"elasticsearch": {"version": "9.5.4"}},
        "summaries": summaries,
        "ratios": ratios(summaries),
        "bounds": {"elasticsearch": bound_statement(summaries, "elasticsearch", 2)},
    }


def test_markdown_has_the_comparison_and_cpu_tables() -> None:
    markdown = render_markdown(result_of(example_runs()))
    lines = markdown.splitlines()
    assert "### Elasticsearch 9.5.4" in lines
    assert f"| 10 | 1,300 | 2,600 | 5,200 | 1,200 | 200 | 0.50 / 0.25 | 6.5{TIMES} |" in lines
    assert f"| 1,000 | 5,000 | 18,000 | 20,000 | 8,000 | 200 | 0.28 / 0.25 | 25.0{TIMES} |" in lines
    assert "| 1 | baseline (1 per request) | 200 | 1,800 | 2,900 | 0.36 | 0.58 |" in lines
    assert "| 10 | limit, 2 conn | 5,200 | 12 | 430 | 0.06 | 2.24 |" in lines
    assert "Reproduce: `python -m bench.consumer --engine elasticsearch`" in lines
    stale = [line for line in lines if "answered 409" in line]
    assert len(stale) == 1
    assert stale[0].endswith("median 37 at batch 10 of 1,000.")  # none at batch 1000: not named
    assert any(line.startswith("What bounds ours: ") for line in lines)
    assert "Test CPU, 2 cores" in lines[0]
    assert "elasticsearch 9.5.1" in lines[0]
    assert "orjson" not in lines[0]  # packages not installed are not named


def test_markdown_shows_spread_and_missing_values() -> None:
    runs = [run("ours", 10, rate, 300, None, repetition=n) for n, rate in enumerate([900.0, 1100.0, 1000.0])]
    markdown = render_markdown(result_of(runs))
    assert f"| 10 | 1,000 (900{DASH}1,100) | n/a | n/a | n/a | n/a | n/a / n/a | n/a |" in markdown.splitlines()
