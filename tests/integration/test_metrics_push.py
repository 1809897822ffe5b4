"""Metrics out of Lambda, proven with real processes: consumer "containers" push to a real Pushgateway,
a real Prometheus scrapes it, and the janitor function retires the groups of containers that went away.

Each container is a separate Python process that imports app.py the way Lambda does and
runs the real `index_changes` handler on SQS-shaped batches against the real engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.observability.pushgateway import Pushgateway
from currencies_local.lambda_events import sqs_event
from currencies_local.moto import REGION, aws_environment
from currencies_local.pipeline import LocalPipeline
from currencies_local.synthetic import TableModel
from tests.integration.conftest import Observability
from tests.integration.engines import EngineUnderTest
from tests.integration.support import eventually

CONTAINER = Path(__file__).with_name("lambda_container.py")
IDLE_AFTER_S = 3  # the janitor's bound; containers take a new identity after a third of it
QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:currency-queue"


def run_container(environment: dict[str, str], handler: str, events: list[dict[str, Any]], pause_s: float = 0.0):
    spec = {"environment": environment, "handler": handler, "events": events, "pause_s": pause_s}
    return subprocess.Popen(
        [sys.executable, str(CONTAINER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ), json.dumps(spec)


def finish(started: list[tuple[subprocess.Popen[str], str]]) -> list[dict[str, Any]]:
    """Feed every container its spec (they run concurrently) and collect their reports."""
    for process, spec in started:
        assert process.stdin is not None
        process.stdin.write(spec)
        process.stdin.close()
    reports = []
    for process, _ in started:
        assert process.stdout is not None
        assert process.stderr is not None
        out, err = process.stdout.read(), process.stderr.read()
        assert process.wait(timeout=120) == 0, err[-3000:]
        reports.append(json.loads(out))
    return reports


def batch_event(bodies: list[str]) -> dict[str, Any]:
    messages = [
        {
            "MessageId": str(uuid.uuid4()),
            "ReceiptHandle": "r",
            "Body": body,
            "Attributes": {"ApproximateReceiveCount": "1"},
        }
        for body in bodies
    ]
    return sqs_event(messages, QUEUE_ARN, REGION)


def schedule_event() -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-27T12:00:00Z",
        "region": REGION,
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/tidy"],
        "detail": {},
    }


@pytest.fixture
def lambda_environment(pipeline: LocalPipeline, observability: Observability) -> dict[str, str]:
    """A deployed stage's settings, pointed at this test's own indices and the real Pushgateway."""
    suffix = uuid.uuid4().hex[:8]
    return {
        **pipeline.environment,
        **aws_environment(pipeline.moto_url),
        "CURRENCIES_PUSHGATEWAY_URL": observability.pushgateway_url,
        "CURRENCIES_METRICS_IDLE_AFTER_S": str(IDLE_AFTER_S),
        "CURRENCIES_EVENTS_INDEX": f"push-events-{suffix}",
        "CURRENCIES_RATES_INDEX": f"push-rates-{suffix}",
        "AWS_LAMBDA_FUNCTION_NAME": f"currencies-test-{suffix}-index_changes",
    }


def totals(prometheus: Any, function: str) -> dict[str, float]:
    """All-time consumer outcomes of one function: live container groups plus the retired totals."""
    expr = (
        f'sum by (outcome) (currencies_consumer_messages_total{{function="{function}"}})'
        f' + on (outcome) sum by (outcome) (currencies_retired_consumer_messages_total{{function="{function}"}})'
        f' or sum by (outcome) (currencies_consumer_messages_total{{function="{function}"}})'
        f' or sum by (outcome) (currencies_retired_consumer_messages_total{{function="{function}"}})'
    )
    found = {series["metric"]["outcome"]: float(series["value"][1]) for series in prometheus.query(expr)}
    return {outcome: value for outcome, value in found.items() if value}  # outcomes start at zero


def test_counters_from_many_containers_add_up_exactly_and_idle_groups_are_retired(
    lambda_environment: dict[str, str], observability: Observability, engine: EngineUnderTest
) -> None:
    function = lambda_environment["AWS_LAMBDA_FUNCTION_NAME"]
    gateway = Pushgateway(observability.pushgateway_url)
    prometheus = observability.prometheus

    table = TableModel()
    for number in range(60):
        table.put(f"P{chr(65 + number % 6)}{chr(65 + number // 6 % 26)}", Decimal(number + 1))
    bodies = [change.to_json() for change in table.changes()]
    # Four containers at once; the last one repeats 15 changes (redeliveries) and pauses
    # longer than its rotation bound between invocations, so it pushes under new identities.
    plan = [
        (bodies[0:20], 0.0),
        (bodies[20:40], 0.0),
        (bodies[40:60], 0.0),
        (bodies[5:20], IDLE_AFTER_S / 3 + 0.5),
    ]
    reports = finish(
        [
            run_container(
                lambda_environment,
                "index_changes",
                [batch_event(part[i : i + 5]) for i in range(0, len(part), 5)],
                pause,
            )
            for part, pause in plan
        ]
    )
    assert all(not r["batchItemFailures"] for report in reports for r in report["responses"])
    rotated = reports[3]["instances"]
    assert len(set(rotated)) == len(rotated), "an idle container must take a new identity"
    handled = sum(len(part) for part, _ in plan)
    expected = {"indexed": 60.0, "duplicate": 15.0}

    groups = [g for g in gateway.groups(5) if g.labels["function"] == function]
    assert len(groups) == 3 + len(rotated)

    # Pushed again and again (one PUT per invocation), the totals are still exact: no double counting.
    seen = eventually(lambda: totals(prometheus, function), lambda found: found == expected, 20)
    assert seen == expected, f"{seen} != {expected} for {handled} messages"

    # The containers are gone. Once idle past the bound, the janitor (itself a Lambda) folds them.
    time.sleep(IDLE_AFTER_S + 0.5)
    janitor_env = {**lambda_environment, "AWS_LAMBDA_FUNCTION_NAME": function.replace("index_changes", "tidy_metrics")}
    [janitor] = finish([run_container(janitor_env, "tidy_metrics", [schedule_event()])])
    assert janitor["responses"] == [{"groups_retired": 3 + len(rotated)}]
    left = [g.labels["instance"] for g in gateway.groups(5) if g.labels["function"] == function]
    assert left == ["retired"], "idle groups must not pile up"

    # Nothing was lost when they went away; the retired totals carry them.
    seen = eventually(
        lambda: (totals(prometheus, function), prometheus.value(f'count(push_time_seconds{{function="{function}"}})')),
        lambda found: found == (expected, 1.0),
        20,
    )
    assert seen == (expected, 1.0)

    # A second generation of containers, retired in turn, adds to the same retired totals.
    more = TableModel(now_ms=1_900_000_000_000)
    for number in range(10):
        more.put(f"Q{chr(65 + number)}A", Decimal(number + 1))
    finish([run_container(lambda_environment, "index_changes", [batch_event([c.to_json() for c in more.changes()])])])
    time.sleep(IDLE_AFTER_S + 0.5)
    [janitor] = finish([run_container(janitor_env, "tidy_metrics", [schedule_event()])])
    # The consumer's new group, and the first janitor container's own (it went away too).
    assert janitor["responses"] == [{"groups_retired": 2}]
    expected = {"indexed": 70.0, "duplicate": 15.0}
    seen = eventually(lambda: totals(prometheus, function), lambda found: found == expected, 20)
    assert seen == expected

    # The janitor published the queue depths once, under its own fixed group.
    depth = eventually(
        lambda: prometheus.query(f'currencies_queue_messages{{function="{janitor_env["AWS_LAMBDA_FUNCTION_NAME"]}"}}'),
        lambda found: {s["metric"]["queue"] for s in found} == {"consumer", "dead_letter"},
        20,
    )
    assert {s["metric"]["instance"] for s in depth} == {"queues"}


def test_out_of_order_containers_leave_the_newest_rate_and_push_no_rate_gauge(
    lambda_environment: dict[str, str], observability: Observability, engine: EngineUnderTest
) -> None:
    table = TableModel()
    for rate in ("1.10", "1.20", "1.30"):
        table.put("OOO", Decimal(rate))
    first, second, third = (change.to_json() for change in table.changes())
    # The newest change lands first, in one container; the older ones later, in another.
    finish([run_container(lambda_environment, "index_changes", [batch_event([third])])])
    finish([run_container(lambda_environment, "index_changes", [batch_event([first, second])])])

    rates_index = lambda_environment["CURRENCIES_RATES_INDEX"]
    engine.client.indices.refresh(index=rates_index)
    document = engine.client.get(index=rates_index, id="OOO")["_source"]
    assert document["currency"]["rate"] == "1.3"
    function = lambda_environment["AWS_LAMBDA_FUNCTION_NAME"]
    time.sleep(2.5)  # more than two scrapes
    assert observability.prometheus.query(f'currencies_currency_rate{{function="{function}"}}') == []
    stale = observability.prometheus.query(
        f'sum(currencies_consumer_messages_total{{function="{function}", outcome="stale"}})'
    )
    assert float(stale[0]["value"][1]) == 2.0
