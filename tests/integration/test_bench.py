"""The benchmark harnesses run end to end in a small quick mode and produce well-formed results.

No speed is asserted here: the numbers are the benchmarks' business (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.integration.conftest import ENGINE_PROCESSES


def test_consumer_bench_quick(elasticsearch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.consumer import BASELINE, VARIANTS, main  # noqa: PLC0415

    monkeypatch.delenv("BENCH_FULL", raising=False)
    node = ENGINE_PROCESSES.get("elasticsearch")  # None when the node was given by ELASTICSEARCH_URL
    out = tmp_path / "consumer.json"
    args = ["--engine", "elasticsearch", "--url", elasticsearch_url, "--changes", "300", "--baseline-changes", "20"]
    args += ["--batch-size", "10", "--batch-size", "100", "--repetitions", "1", "--json", str(out)]
    if node is not None:
        args += ["--node-pid", str(node.pid)]
    outcome = CliRunner().invoke(main, args, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output

    result = json.loads(out.read_text())
    assert result["mode"] == "quick"
    assert result["config"]["changes"] == 300
    assert {"cpu", "cores", "date", "packages"} <= set(result["machine"])
    assert result["engines"]["elasticsearch"]["version"].split(".")[0].isdigit()
    expected = {(variant, size) for variant in VARIANTS for size in (10, 100)} | {(BASELINE, 1)}
    assert {(r["variant"], r["batch_size"]) for r in result["runs"]} == expected
    assert len(result["runs"]) == len(expected)
    for r in result["runs"]:
        assert r["events"] == (20 if r["variant"] == BASELINE else 300)
        assert r["indexed"] == r["events"], r
        assert r["seconds"] > 0
        assert r["events_per_second"] > 0
        assert r["python_us_per_event"] > 0
        assert (r["engine_us_per_event"] is not None) == (node is not None), r
    assert len(result["summaries"]) == len(expected)
    for size in ("10", "100"):
        ratio = result["ratios"]["elasticsearch"][size]
        assert set(ratio) == {"ours/limit_1", "ours/limit_2", "ours/baseline"}
        assert all(value > 0 for value in ratio.values())
    assert result["bounds"]["elasticsearch"].startswith("What bounds ours: at batch 10, ")

    assert "| batch size | ours | limit 1 conn | limit 2 conn | helpers.bulk |" in outcome.stdout
    assert any(line.startswith(("| 10 | ", "| 100 | ")) for line in outcome.stdout.splitlines())
    # The node is left as found: the run's indices and templates are gone.
    with urllib.request.urlopen(f"{elasticsearch_url}/_cat/indices?format=json") as response:
        assert not [i["index"] for i in json.loads(response.read()) if i["index"].startswith("bench-")]
    with urllib.request.urlopen(f"{elasticsearch_url}/_index_template") as response:
        assert not [t["name"] for t in json.loads(response.read())["index_templates"] if t["name"].startswith("bench-")]


def test_stream_handler_bench_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its own fresh moto server; both variants publish every record; calls are counted per variant."""
    from bench.stream_handler import main  # noqa: PLC0415

    monkeypatch.delenv("BENCH_FULL", raising=False)
    out = tmp_path / "stream_handler.json"
    outcome = CliRunner().invoke(main, ["--records", "120", "--json", str(out)], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output

    result = json.loads(out.read_text())
    assert (result["mode"], result["records"], result["batch_size"]) == ("quick", 120, 100)
    assert {"cpu", "cores", "date", "packages"} <= set(result["machine"])
    assert set(result["variants"]) == {"ours", "naive"}
    # Batches of 100 and 20 records, PublishBatch of up to 10: 10 + 2 calls; the naive way one per record.
    assert result["variants"]["ours"]["sns_calls"] == [12]
    assert result["variants"]["naive"]["sns_calls"] == [120]
    for variant in result["variants"].values():
        assert variant["records_per_s"]["median"] > 0
        assert variant["cpu_us_per_record"]["median"] > 0
    assert "| ours: `relay()`, PublishBatch of up to 10 | 0.100 |" in outcome.stdout
    assert "Command: `python -m bench.stream_handler" in outcome.stdout


def test_freshness_bench_quick(elasticsearch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few seconds at a low rate through a fresh local pipeline on the session's node."""
    from bench.freshness import main  # noqa: PLC0415
    from chalicelib.observability.metrics import STAGES  # noqa: PLC0415

    monkeypatch.delenv("BENCH_FULL", raising=False)
    out = tmp_path / "freshness.json"
    args = ["--rate", "5", "--seconds", "3", "--url", elasticsearch_url, "--json", str(out)]
    outcome = CliRunner().invoke(main, args, catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output

    result = json.loads(out.read_text())
    assert result["mode"] == "quick"
    assert result["writes"] == 15
    assert result["accepted"] == 15
    assert result["never_searchable"] == 0
    for key in ("answer_to_visible_s", "visible_to_searchable_s", "answer_to_searchable_s"):
        delays = result[key]
        assert delays["count"] == 15
        assert delays["p50"] <= delays["p95"] <= delays["p99"] <= delays["max"]
    assert result["answer_to_searchable_s"]["p50"] > 0
    for stage in STAGES:
        assert result["stage_lag"][stage]["count"] >= 15, stage
    assert result["configuration"]["refresh_interval"]
    assert set(result["verdict"]) == {"polling_plus_refresh_s", "p99_above_s", "met"}
    assert "**answered -> searchable**" in outcome.stdout


def test_footprint_bench_quick(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`currencies package` builds the zip; every function's cold import and the consumer's memory are measured."""
    from bench.footprint import HANDLERS, LAMBDA_MODE, MODES, SOURCE_MODE, main  # noqa: PLC0415

    monkeypatch.delenv("BENCH_FULL", raising=False)
    out = tmp_path / "footprint.json"
    outcome = CliRunner().invoke(main, ["--runs", "1", "--messages", "200", "--json", str(out)], catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output

    result = json.loads(out.read_text())
    assert result["zip"]["mb"] > 0
    assert {"app.py", "chalicelib"} <= set(result["zip"]["top_level"])
    for mode in MODES:
        assert set(result["handlers"][mode]) == set(HANDLERS)
        for timing in result["handlers"][mode].values():
            assert 0 < timing["app_ms"]["best"] <= timing["import_ms"]["best"]
            assert timing["import_ms"]["runs"] == 1
    # The Lambda way loads the zip's bytecode; the other package way compiles the same modules from source.
    assert result["bytecode"]["skipped"] is None
    assert result["zip"]["bytecode_mb"] > 0
    for handler in HANDLERS:
        lambda_way = result["handlers"][LAMBDA_MODE][handler]["loaded"]
        from_source = result["handlers"][SOURCE_MODE][handler]["loaded"]
        assert lambda_way["source"] == from_source["bytecode"] == 0
        assert lambda_way["bytecode"] == from_source["source"] > 0
    memory = result["consumer_memory"]
    assert (memory["messages"], memory["failures"]) == (200, 0)
    assert memory["bulk_items"] >= 200
    assert 0 < memory["after_import_mb"] <= memory["peak_mb"]
