"""Prometheus config, rules and their promtool unit tests (prometheus/, docs/alerts.md).

promtool proves the rules behave; the structural tests prove nothing escaped the unit tests:
every alert fires in some case and stays quiet in another, carries what an on-call person needs,
and names only metrics the application really exposes.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chalicelib.observability.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTS_DOC = ROOT / "docs" / "alerts.md"

SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "28d")
SEVERITIES = {"page", "ticket"}
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook")
METRIC_SUFFIXES = ("_total", "_bucket", "_sum", "_count")
METRIC_NAME = re.compile(r"\bcurrencies_[a-z0-9_]+")
RECORD_NAME = re.compile(r"^currencies:[a-z0-9_]+:[a-z0-9_]+$")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: `make system-deps` installs it (Debian package prometheus)")
    return path


def _run(*args: str) -> None:
    """Run promtool from the repository root; show its whole output when it fails."""
    result = subprocess.run([_promtool(), *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} -> rc {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _glob(directory: Path, pattern: str) -> set[Path]:
    """Rule-file patterns are relative to the file that names them, as Prometheus and promtool read them."""
    return {Path(match).resolve() for match in glob.glob(str(directory / pattern))}


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for group in _load(path)["groups"] for rule in group["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _alert_cases() -> list[tuple[str, list[dict[str, Any]]]]:
    """(alertname, exp_alerts) for every alert_rule_test of every test file."""
    return [
        (case["alertname"], case.get("exp_alerts") or [])
        for path in TEST_FILES
        for test in _load(path)["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_files_exist() -> None:
    assert CONFIG.is_file()
    assert RULE_FILES, "no prometheus/rules/*.yml"
    assert TEST_FILES, "no prometheus/tests/*.yml"


def test_promtool_check_config() -> None:
    _run("check", "config", str(CONFIG.relative_to(ROOT)))


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    _run("check", "rules", str(path.relative_to(ROOT)))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path: Path) -> None:
    _run("test", "rules", str(path.relative_to(ROOT)))


def test_config_loads_every_rule_file_and_scrapes_the_pushgateway_with_its_labels() -> None:
    config = _load(CONFIG)
    loaded = {match for pattern in config["rule_files"] for match in _glob(CONFIG.parent, pattern)}
    assert loaded == {path.resolve() for path in RULE_FILES}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) >= {"currencies", "pushgateway", "prometheus"}
    assert jobs["pushgateway"].get("honor_labels") is True


def test_every_rule_file_is_under_test() -> None:
    """A test file's rule_files are relative to the test file; together they must cover every rule file."""
    tested = {
        match for path in TEST_FILES for pattern in _load(path)["rule_files"] for match in _glob(path.parent, pattern)
    }
    assert tested >= {path.resolve() for path in RULE_FILES}


def test_freshness_recording_rules_are_named_as_the_dashboards_expect() -> None:
    records = {rule["record"]: rule["expr"] for rule in _rules() if "record" in rule}
    for window in SLO_WINDOWS:
        name = f"currencies:freshness_errors:ratio_rate{window}"
        assert name in records, name
        assert f"[{window}]" in records[name], name
    for name in records:
        assert RECORD_NAME.match(name), f"{name}: recording rules are named currencies:<what>:<agg/window>"


def test_every_alert_fires_in_a_test_and_stays_quiet_in_another() -> None:
    alerts = _alerts()
    cases = _alert_cases()
    unknown = {name for name, _ in cases} - set(alerts)
    assert not unknown, f"tests name alerts no rule defines (an empty expectation would pass silently): {unknown}"
    fires = {name for name, expected in cases if expected}
    quiet = {name for name, expected in cases if not expected}
    assert not set(alerts) - fires, f"never shown firing: {sorted(set(alerts) - fires)}"
    assert not set(alerts) - quiet, f"never shown quiet: {sorted(set(alerts) - quiet)}"
    for name, expected in cases:
        for alert in expected:
            assert alert.get("exp_labels"), f"{name}: a firing case without exp_labels"
            assert alert.get("exp_annotations"), f"{name}: a firing case without exp_annotations"


def test_every_alert_tells_on_call_what_to_do() -> None:
    anchors = {
        _slug(line.lstrip("#")) for line in ALERTS_DOC.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    }
    for name, rule in _alerts().items():
        assert rule.get("for"), f"{name}: no `for`"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity must be one of {SEVERITIES}"
        annotations = rule.get("annotations", {})
        for key in REQUIRED_ANNOTATIONS:
            assert annotations.get(key), f"{name}: no {key} annotation"
        document, _, anchor = annotations["runbook"].partition("#")
        assert document == "docs/alerts.md", f"{name}: runbook must point into docs/alerts.md"
        assert anchor in anchors, f"{name}: docs/alerts.md has no section #{anchor}"


def _base_name(metric: str) -> str:
    for suffix in METRIC_SUFFIXES:
        if metric.endswith(suffix):
            return metric.removesuffix(suffix)
    return metric


def test_rules_name_only_metrics_the_registry_exposes() -> None:
    registered = {family.name for family in REGISTRY.collect()}
    for rule in _rules():
        for metric in METRIC_NAME.findall(rule["expr"]):
            assert _base_name(metric) in registered, (
                f"{rule.get('alert') or rule.get('record')}: {metric} is not registered"
            )
