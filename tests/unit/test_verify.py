"""Unit tests for currencies_ops.verify (the comparison), .target (finding the deployment) and .metrics.

The table and the indices are made by production code: `TableModel` writes items as
`RateStore` does and emits the stream records, `change_from_record` makes the changes,
and `chalicelib.consumer.documents` the documents a faithful pipeline would index.
"""

from __future__ import annotations

import fcntl
import json
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.consumer.documents import event_document, rate_action
from chalicelib.stream.changes import Change
from currencies_local.cli import _write_lock
from currencies_local.synthetic import TableModel, random_table
from currencies_ops import verify_command
from currencies_ops.letters import MOVED_REASON, parse_letter
from currencies_ops.metrics import OperationMetrics
from currencies_ops.target import Target, TargetError, from_local, from_stage, resolve
from currencies_ops.verify import DeadLetters, Difference, Report, compare, letter_group

Hits = dict[str, dict[str, Any]]


def scanned(item: dict[str, Any]) -> dict[str, Any]:
    """An item as boto3 reads it from DynamoDB: every number a Decimal."""
    return {
        name: Decimal(value) if isinstance(value, int) and value is not True else value for name, value in item.items()
    }


def indexed(changes: list[Change]) -> tuple[Hits, Hits]:
    """The rates-index hits (highest external version wins) and each symbol's newest event hit."""
    rates: Hits = {}
    newest: Hits = {}
    for change in changes:
        action = rate_action(change, "currency-rates")
        assert action.version is not None
        if change.symbol not in rates or rates[change.symbol]["_version"] < action.version:
            rates[change.symbol] = {"_id": change.symbol, "_version": action.version, "_source": action.document}
        event = {"_id": change.id, "_source": event_document(change, "2024-01-01T00:00:00Z")}
        if change.symbol not in newest or newest[change.symbol]["_source"]["currency"]["version"] < change.version:
            newest[change.symbol] = event
    return rates, newest


def differences(table: TableModel, rates: Hits, events: Hits) -> list[Difference]:
    symbols = sorted(set(table.items) | set(rates))
    return [
        difference
        for symbol in symbols
        for difference in compare(
            symbol,
            scanned(table.items[symbol]) if symbol in table.items else None,
            rates.get(symbol),
            events.get(symbol),
        )
    ]


def faithful(table: TableModel) -> tuple[Hits, Hits]:
    return indexed(table.changes())


def kinds(found: list[Difference]) -> list[tuple[str, str]]:
    return [(difference.kind, difference.symbol) for difference in found]


@given(st.integers(min_value=1, max_value=300), st.integers(min_value=0, max_value=2**32))
def test_a_faithfully_indexed_table_has_no_differences(changes: int, seed: int) -> None:
    table = random_table(changes, ["EUR", "USD", "JPY", "GBP"], seed=seed, delete_share=0.3)
    assert differences(table, *faithful(table)) == []


@pytest.fixture
def table() -> TableModel:
    """EUR live at its third revision, USD deleted (a tombstone), GBP live."""
    model = TableModel()
    model.put("EUR", Decimal("1.08"))
    model.put("EUR", Decimal("1.09"))
    model.put("EUR", Decimal("1.10"))
    model.put("USD", Decimal("1.2"))
    model.delete("USD")
    model.put("GBP", Decimal("0.85"))
    return model


def test_missing_when_the_rates_index_lacks_the_document_or_holds_a_marker(table: TableModel) -> None:
    rates, events = faithful(table)
    del rates["EUR"]
    rates["GBP"]["_source"]["currency"] = {"symbol": "GBP", "version": rates["GBP"]["_version"], "deleted": True}
    found = differences(table, rates, events)
    assert kinds(found) == [("missing", "EUR"), ("missing", "GBP")]
    assert found[0].table.startswith("1.1 @ v")
    assert found[0].index == "no document"
    assert found[1].index.startswith("deletion marker @ v")


def test_extra_when_the_index_shows_a_symbol_the_table_deleted_or_never_had(table: TableModel) -> None:
    rates, events = faithful(table)
    usd_before_delete = indexed(table.changes()[:-2])[0]["USD"]  # the live document before the delete
    rates["USD"] = usd_before_delete
    rates["CHF"] = {"_id": "CHF", "_version": 5, "_source": {"currency": {"symbol": "CHF", "rate": "0.9"}}}
    found = differences(table, rates, events)
    assert kinds(found) == [("extra", "CHF"), ("extra", "USD")]
    assert found[0].table == "no item"
    assert found[1].table.startswith("deleted @ v")


def test_a_deletion_marker_for_a_symbol_without_item_is_no_difference(table: TableModel) -> None:
    rates, events = faithful(table)
    rates["CHF"] = {"_id": "CHF", "_version": 5, "_source": {"currency": {"symbol": "CHF", "deleted": True}}}
    assert differences(table, rates, events) == []


def test_different_rate(table: TableModel) -> None:
    rates, events = faithful(table)
    rates["EUR"]["_source"]["currency"]["rate"] = "1.11"
    found = differences(table, rates, events)
    assert kinds(found) == [("different_rate", "EUR")]
    assert (found[0].table.split(" @")[0], found[0].index.split(" @")[0]) == ("1.1", "1.11")


def test_equal_value_written_differently_is_a_difference_in_the_index_only(table: TableModel) -> None:
    """The pipeline indexes the canonical text ("1.1"), and `.exact` term queries rely on it: "1.10"
    in the index is reported. The table's own spelling does not matter: it is compared canonically."""
    rates, events = faithful(table)
    table.items["EUR"]["rate"] = Decimal("1.1000")  # as another writer (or moto) might keep it
    assert differences(table, rates, events) == []
    rates["EUR"]["_source"]["currency"]["rate"] = "1.10"
    assert kinds(differences(table, rates, events)) == [("different_rate", "EUR")]


def test_a_rate_is_read_as_the_document_spells_it(table: TableModel) -> None:
    """A JSON number is compared as JSON writes it (as the `.exact` keyword indexes it); no rate is a difference."""
    rates, events = faithful(table)
    rates["EUR"]["_source"]["currency"]["rate"] = 1.1
    del rates["GBP"]["_source"]["currency"]["rate"]
    found = differences(table, rates, events)
    assert kinds(found) == [("different_rate", "GBP")]
    assert found[0].index.startswith("no rate")
    rates["EUR"]["_source"]["currency"]["rate"] = 1.11
    assert kinds(differences(table, rates, events)) == [("different_rate", "EUR"), ("different_rate", "GBP")]


def test_older_and_newer_versions(table: TableModel) -> None:
    rates, events = faithful(table)
    rates["EUR"]["_version"] -= 1
    rates["GBP"]["_version"] += 1
    assert kinds(differences(table, rates, events)) == [("older_version", "EUR"), ("newer_version", "GBP")]


def test_a_missed_update_shows_as_an_older_version_with_a_different_rate(table: TableModel) -> None:
    rates, events = faithful(table)
    before_last_put = table.changes()[:2]  # EUR at revision 2 (1.09)
    rates["EUR"] = indexed(before_last_put)[0]["EUR"]
    assert kinds(differences(table, rates, events)) == [("different_rate", "EUR"), ("older_version", "EUR")]


def test_items_written_without_a_version_are_compared_by_rate_only(table: TableModel) -> None:
    rates, events = faithful(table)
    for name in ("revision", "created_at"):
        del table.items["GBP"][name]
    rates["GBP"]["_version"] = 1_700_000_000_00000001  # a fallback version from the stream's time
    events["GBP"]["_source"]["currency"]["version"] = 1_700_000_000_00000001
    assert differences(table, rates, events) == []
    rates["GBP"]["_source"]["currency"]["rate"] = "0.86"
    assert kinds(differences(table, rates, events)) == [("different_rate", "GBP")]


@pytest.mark.parametrize(
    "corruption",
    [{"rate": "not a number"}, {"rate": None}, {"revision": "seven"}, {"created_at": [1]}],
    ids=["rate text", "no rate", "revision text", "created_at list"],
)
def test_unreadable_items_are_their_own_kind(table: TableModel, corruption: dict[str, Any]) -> None:
    rates, events = faithful(table)
    item = table.items["EUR"]
    for name, value in corruption.items():
        if value is None:
            del item[name]
        else:
            item[name] = value
    found = differences(table, rates, events)
    assert kinds(found) == [("unreadable", "EUR")]
    assert found[0].table.startswith("unreadable item {")


def test_a_tombstone_with_a_broken_counter_is_checked_without_its_version(table: TableModel) -> None:
    rates, events = faithful(table)
    table.items["USD"]["revision"] = "broken"
    assert differences(table, rates, events) == []


def test_event_missing(table: TableModel) -> None:
    rates, events = faithful(table)
    del events["EUR"], events["USD"]
    assert kinds(differences(table, rates, events)) == [("event_missing", "EUR"), ("event_missing", "USD")]


def test_newest_event_must_agree_with_a_live_item(table: TableModel) -> None:
    rates, events = faithful(table)
    changes = table.changes()
    events["EUR"] = indexed(changes[:2])[1]["EUR"]  # the newest event is one change behind
    found = differences(table, rates, events)
    assert kinds(found) == [("event_differs", "EUR")]
    assert found[0].index.startswith("newest event: modify 1.09 @ v")
    rates, events = faithful(table)
    events["GBP"]["_source"]["currency"]["rate"] = "0.86"  # at the item's own version
    assert kinds(differences(table, rates, events)) == [("event_differs", "GBP")]
    rates, events = faithful(table)
    events["GBP"]["_source"]["event"]["action"] = "remove"
    events["GBP"]["_source"]["currency"].pop("rate")
    assert kinds(differences(table, rates, events)) == [("event_differs", "GBP")]


def test_newest_event_of_a_tombstone_must_be_its_remove(table: TableModel) -> None:
    rates, events = faithful(table)
    events["USD"]["_source"]["event"]["action"] = "modify"  # at the tombstone's own version
    events["USD"]["_source"]["currency"]["rate"] = "1.2"
    assert kinds(differences(table, rates, events)) == [("event_differs", "USD")]
    rates, events = faithful(table)
    events["USD"]["_source"]["currency"]["version"] -= 1
    assert kinds(differences(table, rates, events)) == [("event_differs", "USD")]


def test_report_counts_every_difference_and_keeps_the_first_few() -> None:
    report = Report(max_differences=2)
    report.add([Difference("missing", s, "1 @ v1", "no document") for s in ("AAA", "BBB", "CCC")])
    report.add([Difference("extra", "DDD", "no item", "2 @ v1")])
    report.dead_letters = DeadLetters("url", depth=1500, peeked=1000, groups={("stream", "too large"): 1000})
    out = report.to_json()
    assert not report.clean
    assert out["differences"]["total"] == 4
    assert out["differences"]["by_kind"]["missing"] == 3
    assert out["differences"]["by_kind"]["older_version"] == 0
    assert [d["symbol"] for d in out["differences"]["listed"]] == ["AAA", "BBB"]
    assert out["differences"]["truncated"] is True
    assert out["dead_letters"]["sample"] is True
    assert out["dead_letters"]["groups"] == [{"source": "stream", "reason": "too large", "count": 1000}]
    assert Report(max_differences=5).clean


def letter_group_of(message_id: str, body: str) -> tuple[str, str]:
    return letter_group(parse_letter(message_id, body))


def test_dead_letters_are_grouped_by_source_and_reason() -> None:
    long = json.dumps({"source": "stream", "reason": "r" * 500, "payload": None})
    assert letter_group_of("m1", long) == ("stream", "r" * 200)
    letter = json.dumps({"source": "consumer", "reason": "mapping refused", "payload": None})
    assert letter_group_of("m2", letter) == ("consumer", "mapping refused")
    envelope = json.dumps({"Type": "Notification", "Message": "{}"})
    assert letter_group_of("m3", envelope) == ("consumer", MOVED_REASON)
    assert letter_group_of("m4", "not json")[0] == "unknown"
    assert letter_group_of("m5", json.dumps({"source": 1}))[0] == "unknown"


# -- Target --------------------------------------------------------------------------------------


def write_config(path: Path) -> Path:
    config = {
        "environment_variables": {"CURRENCIES_TABLE": "currency", "CURRENCIES_RATES_INDEX": "top-rates"},
        "stages": {
            "prod": {"environment_variables": {"CURRENCIES_TABLE": "prod-currency", "CURRENCIES_DLQ_URL": "dlq"}},
            "local": {},
        },
    }
    path.write_text(json.dumps(config))
    return path


def test_a_stage_overlays_the_top_level_variables(tmp_path: Path) -> None:
    target = from_stage("prod", write_config(tmp_path / "config.json"), {"AWS_REGION": "eu-west-1"})
    assert (target.settings.table_name, target.settings.rates_index) == ("prod-currency", "top-rates")
    assert target.settings.dlq_url == "dlq"
    assert target.aws == {"AWS_REGION": "eu-west-1"}
    assert target.source == "stage prod"
    assert from_stage("local", tmp_path / "config.json", {}).settings.table_name == "currency"


def test_an_unknown_stage_or_config_says_what_exists(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="has no stage 'qa'; it has local, prod"):
        from_stage("qa", write_config(tmp_path / "config.json"), {})
    with pytest.raises(TargetError, match="not found: run from the project directory"):
        from_stage("prod", tmp_path / "absent.json", {})


def test_without_flags_the_environment_must_name_the_table() -> None:
    with pytest.raises(TargetError, match="no deployment given: name the deployment with --stage"):
        resolve(None, False, {"CURRENCIES_SEARCH_URL": "http://x"})
    target = resolve(None, False, {"CURRENCIES_TABLE": "t", "CURRENCIES_SEARCH_ENGINE": "opensearch"})
    assert (target.settings.table_name, target.settings.search.engine, target.source) == (
        "t",
        "opensearch",
        "environment",
    )
    with pytest.raises(TargetError, match="either --stage or --local"):
        resolve("prod", True, {})
    with pytest.raises(TargetError, match="CURRENCIES_SEARCH_ENGINE"):
        resolve(None, False, {"CURRENCIES_TABLE": "t", "CURRENCIES_SEARCH_ENGINE": "solr"})


def test_local_reads_the_settings_currencies_up_wrote_while_it_holds_the_lock(tmp_path: Path) -> None:
    lock_path = tmp_path / "up.lock"
    with pytest.raises(TargetError, match="is not running"):
        from_local(lock_path)
    pipeline = SimpleNamespace(
        api_url="http://127.0.0.1:8123",
        moto_url="http://127.0.0.1:5123",
        pushgateway_url="http://127.0.0.1:9123",
        options=SimpleNamespace(prometheus=True),
        environment={
            "CURRENCIES_TABLE": "currency",
            "CURRENCIES_DLQ_URL": "http://127.0.0.1:5123/123/currency-queue-dlq",
            "CURRENCIES_SEARCH_ENGINE": "opensearch",
            "CURRENCIES_SEARCH_URL": "http://127.0.0.1:9250",
        },
    )
    with lock_path.open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `currencies up` holds it
        with pytest.raises(TargetError, match="still starting"):
            from_local(lock_path)
        _write_lock(lock, pipeline)  # type: ignore[arg-type]
        target = from_local(lock_path)
    assert target.settings.search.url == "http://127.0.0.1:9250"
    assert target.settings.search.engine == "opensearch"
    assert target.settings.dlq_url == pipeline.environment["CURRENCIES_DLQ_URL"]
    assert target.settings.pushgateway_url == "http://127.0.0.1:9123"
    assert target.aws["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5123"
    assert target.aws["AWS_REGION"] == "us-east-1"
    with pytest.raises(TargetError, match="is not running"):  # the lock was released: `up` stopped
        from_local(lock_path)


# -- The command and its metrics ----------------------------------------------------------------


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch) -> list[Report]:
    """The command around a run whose result the test sets."""
    reports: list[Report] = []
    target = resolve(None, False, {"CURRENCIES_TABLE": "t"})
    monkeypatch.setattr(verify_command, "resolve", lambda stage, local: target)

    def run(target: Target, metrics: OperationMetrics, **options: Any) -> Report:
        metrics.count("scanned", 3)
        return reports.pop(0)

    monkeypatch.setattr(verify_command, "run_verify", run)
    return reports


def test_exit_status_is_zero_only_when_clean(fake_run: list[Report]) -> None:
    fake_run.append(Report(max_differences=10))
    result = CliRunner().invoke(verify_command.verify, ["--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["clean"] is True
    different = Report(max_differences=10)
    different.add([Difference("extra", "CHF", "no item", "0.9 @ v5")])
    fake_run.append(different)
    result = CliRunner().invoke(verify_command.verify, [])
    assert result.exit_code == 1
    assert "CHF" in result.output
    assert "1 differences (extra 1)" in result.output


def test_exit_status_two_with_a_readable_error_when_nothing_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CURRENCIES_TABLE", raising=False)
    result = CliRunner().invoke(verify_command.verify, ["--json"])
    assert result.exit_code == 2
    assert "no deployment given" in json.loads(result.output)["error"]


def test_run_metrics_count_and_record_the_result() -> None:
    with OperationMetrics("verify", None, run_id="r1") as metrics:
        metrics.start_at_zero("scanned", "different")
        metrics.count("scanned", 500)
        metrics.finish("clean")
    value = metrics.registry.get_sample_value
    assert value("currencies_operation_records", {"operation": "verify", "outcome": "scanned"}) == 500
    assert value("currencies_operation_records", {"operation": "verify", "outcome": "different"}) == 0
    assert value("currencies_operation_finished_timestamp_seconds", {"operation": "verify", "result": "clean"}) > 0


def test_an_unreachable_gateway_does_not_fail_the_run(caplog: pytest.LogCaptureFixture) -> None:
    with OperationMetrics("verify", "http://127.0.0.1:9", run_id="r2") as metrics:
        metrics.count("scanned")
    metrics.push()
    assert [r.message for r in caplog.records if "could not push" in r.message] != []
    assert len([r for r in caplog.records if "could not push" in r.message]) == 1
