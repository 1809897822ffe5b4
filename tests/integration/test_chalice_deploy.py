"""The `chalice deploy` path end to end, against moto server, on a copy of the project.

`currencies provision` twice (the second finds everything), `chalice deploy`, `currencies
configure-mappings`, a redeploy, `chalice delete`. The module's fixture runs the steps once
and records what AWS (moto) shows after each; the tests assert on that record. moto's API
Gateway gets one test-only adaptation (tests/integration/moto_apigateway.py says why).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from currencies_local.moto import REGION, aws_environment
from currencies_local.pipeline import PROJECT_DIR
from currencies_local.processes import ManagedProcess, free_port, http_status
from currencies_ops.deploy.deploy_commands import configure_mappings, provision
from currencies_ops.deploy.mappings import configure_mappings as apply_mapping_settings
from currencies_ops.deploy.policies import SearchAccess
from currencies_ops.deploy.provision import ProvisionReport, read_stage_environment, write_stage_config
from currencies_ops.deploy.provision import provision as provision_stage
from currencies_ops.deploy.stack import (
    FUNCTIONS,
    MAX_RECEIVE_COUNT,
    QUEUE_MAPPING,
    QUEUE_VISIBILITY_TIMEOUT_S,
    STREAM_MAPPING,
    StageNames,
)

STAGE = "dev"
NAMES = StageNames(STAGE)
USER_SEARCH_URL = "https://search.example.test:443"
ROUTES = {
    "/currency": {"GET", "POST"},
    "/currency/{symbol}": {"GET", "PUT", "DELETE"},
    "/currency/{symbol}/history": {"GET"},
    "/openapi.json": {"GET"},
}


@dataclass
class Run:
    """What each step printed and what moto held afterwards."""

    project: Path
    aws: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    second_provision: ProvisionReport | None = None
    config: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    role_policies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mappings: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, set[str]] = field(default_factory=dict)
    mappings_after_redeploy: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed_after_redeploy: dict[str, set[str]] = field(default_factory=dict)
    left_after_delete: dict[str, list[str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_dir = tmp_path_factory.mktemp("moto")
    server = ManagedProcess(
        "moto server (API Gateway adapted)",
        [sys.executable, "-m", "tests.integration.moto_apigateway", "-H", "127.0.0.1", "-p", str(port)],
        log_dir / "moto.log",
    )
    url = f"http://127.0.0.1:{port}"
    server.wait_until(lambda: http_status(f"{url}/moto-api/") is not None, timeout_s=30)
    yield url
    server.stop()


def _copy_project(target: Path) -> Path:
    """What `chalice deploy` reads, and a stage config holding a variable the user set."""
    for name in ("app.py", "requirements.txt"):
        shutil.copy2(PROJECT_DIR / name, target / name)
    shutil.copytree(PROJECT_DIR / "chalicelib", target / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (target / ".chalice").mkdir()
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())
    config["stages"][STAGE]["environment_variables"]["CURRENCIES_SEARCH_URL"] = USER_SEARCH_URL
    (target / ".chalice" / "config.json").write_text(json.dumps(config, indent=2))
    return target


def _chalice(run: Run, step: str, *args: str) -> None:
    chalice = Path(sys.executable).with_name("chalice")
    started = time.monotonic()
    result = subprocess.run(
        [str(chalice), *args, "--stage", STAGE],
        cwd=run.project, env={**os.environ, **run.aws}, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    run.seconds[step] = time.monotonic() - started
    assert result.returncode == 0, f"chalice {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


def _invoke(run: Run, command: Any, *args: str) -> str:
    wide = {"COLUMNS": "200"}  # one table row per line
    result = CliRunner().invoke(command, ["--stage", STAGE, *args], env={**run.aws, **wide}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _client(run: Run, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=run.aws["AWS_ENDPOINT_URL"],
        aws_access_key_id=run.aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=run.aws["AWS_SECRET_ACCESS_KEY"],
    )


def _mappings(run: Run) -> dict[str, dict[str, Any]]:
    """Every event source mapping, by the function it invokes (its name)."""
    found = _client(run, "lambda").list_event_source_mappings()["EventSourceMappings"]
    return {mapping["FunctionArn"].rpartition(":")[2]: mapping for mapping in found}


def _functions(run: Run) -> dict[str, dict[str, Any]]:
    pages = _client(run, "lambda").get_paginator("list_functions").paginate()
    return {function["FunctionName"]: function for page in pages for function in page["Functions"]}


def _routes(run: Run) -> dict[str, set[str]]:
    apigateway = _client(run, "apigateway")
    [api] = [api for api in apigateway.get_rest_apis()["items"] if api["name"] == "currencies"]
    resources = apigateway.get_resources(restApiId=api["id"], embed=["methods"])["items"]
    return {item["path"]: set(item["resourceMethods"]) for item in resources if item.get("resourceMethods")}


def _role_policies(run: Run, function: dict[str, Any]) -> list[dict[str, Any]]:
    iam, role = _client(run, "iam"), function["Role"].rpartition("/")[2]
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert not attached, f"{role} has managed policies attached: {attached}"
    return [iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"] for name in names]


@pytest.fixture(scope="module")
def run(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    started = time.monotonic()
    run = Run(_copy_project(tmp_path_factory.mktemp("project")), aws_environment(moto_url))
    project = str(run.project)

    run.outputs["provision"] = _invoke(run, provision, "--project-dir", project)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in run.aws.items():
            patch.setenv(name, value)
        session = boto3.Session()
        search = SearchAccess.from_environment(read_stage_environment(run.project, STAGE))
        run.second_provision = provision_stage(STAGE, session, search, deletion_protection=False)
        write_stage_config(run.project, run.second_provision)
    run.config = json.loads((run.project / ".chalice" / "config.json").read_text())

    _chalice(run, "chalice deploy", "deploy")
    run.outputs["configure-mappings"] = _invoke(run, configure_mappings)
    run.functions = _functions(run)
    run.role_policies = {name: _role_policies(run, function) for name, function in run.functions.items()}
    run.mappings = _mappings(run)
    run.routes = _routes(run)

    _chalice(run, "chalice deploy again", "deploy")
    run.mappings_after_redeploy = _mappings(run)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in run.aws.items():
            patch.setenv(name, value)
        changes = apply_mapping_settings(STAGE, boto3.Session())
    run.changed_after_redeploy = {change.function: set(change.changed) for change in changes}

    _chalice(run, "chalice delete", "delete")
    apis = _client(run, "apigateway").get_rest_apis()["items"]
    run.left_after_delete = {
        "functions": sorted(_functions(run)),
        "apis": [api["name"] for api in apis],
        "mappings": sorted(_mappings(run)),
    }
    run.seconds["whole path"] = time.monotonic() - started
    print(f"\nchalice deploy path against moto: {json.dumps(run.seconds, indent=1)}")
    return run


# --- provision ---------------------------------------------------------------------------------


def test_provision_creates_every_resource_then_finds_them_all(run: Run) -> None:
    rows = [line for line in run.outputs["provision"].splitlines() if "currency-dev" in line]
    for resource in ("table", "topic", "dead-letter queue", "queue policy", "subscription", "stream-failures queue"):
        assert any(line.split("│")[1].strip() == resource for line in rows), (resource, rows)
    assert len(rows) == 8
    assert all(line.split("│")[3].strip() == "created" for line in rows), rows
    second = run.second_provision
    assert second is not None
    assert {step.outcome for step in second.steps} == {"found"}, second.steps
    assert len(second.steps) == 8  # table, recovery, topic, DLQ, queue, policy, subscription, failures queue


def test_provisioned_resources_have_the_stack_settings(run: Run) -> None:
    dynamodb, sqs, sns = _client(run, "dynamodb"), _client(run, "sqs"), _client(run, "sns")
    table = dynamodb.describe_table(TableName=NAMES.table)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    backups = dynamodb.describe_continuous_backups(TableName=NAMES.table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    queue_url = sqs.get_queue_url(QueueName=NAMES.queue)["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq_url = sqs.get_queue_url(QueueName=NAMES.dead_letter_queue)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert int(queue["VisibilityTimeout"]) == QUEUE_VISIBILITY_TIMEOUT_S
    redrive = json.loads(queue["RedrivePolicy"])
    assert (redrive["deadLetterTargetArn"], int(redrive["maxReceiveCount"])) == (dlq_arn, MAX_RECEIVE_COUNT)
    topic_arn = run.config["stages"][STAGE]["environment_variables"]["CURRENCIES_TOPIC_ARN"]
    [statement] = json.loads(queue["Policy"])["Statement"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": topic_arn}}
    assert statement["Action"] == "sqs:SendMessage"
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("sqs", queue["QueueArn"])]


def test_provision_writes_the_stage_config_and_keeps_the_users_variables(run: Run) -> None:
    stage = run.config["stages"][STAGE]
    variables = stage["environment_variables"]
    table = _client(run, "dynamodb").describe_table(TableName=NAMES.table)["Table"]
    assert variables["CURRENCIES_STREAM_ARN"] == table["LatestStreamArn"]
    assert variables["CURRENCIES_TABLE"] == NAMES.table
    assert variables["CURRENCIES_QUEUE"] == NAMES.queue
    assert variables["CURRENCIES_TOPIC"] == NAMES.topic
    assert variables["CURRENCIES_TOPIC_ARN"].endswith(f":{NAMES.topic}")
    assert variables["CURRENCIES_DLQ_URL"].endswith(f"/{NAMES.dead_letter_queue}")
    assert variables["CURRENCIES_EVENTS_INDEX"] == NAMES.events_index
    assert variables["CURRENCIES_RATES_INDEX"] == NAMES.rates_index
    assert variables["CURRENCIES_PARTIAL_BATCH_RESPONSE"] == "true"
    assert variables["CURRENCIES_SEARCH_URL"] == USER_SEARCH_URL
    assert "iam_policy_file" not in stage
    for function in FUNCTIONS:
        policy_file = run.project / ".chalice" / stage["lambda_functions"][function]["iam_policy_file"]
        assert policy_file.is_file(), policy_file
        assert "123456789012" in policy_file.read_text()  # moto's account: concrete ARNs, no placeholders


# --- chalice deploy + configure-mappings -------------------------------------------------------


def test_deploy_creates_each_function_with_the_stage_variables(run: Run) -> None:
    assert set(run.functions) == {NAMES.function_name(function) for function in FUNCTIONS}
    expected = read_stage_environment(run.project, STAGE)
    for name, function in run.functions.items():
        assert function["Environment"]["Variables"] == expected, name


def test_each_functions_role_has_exactly_its_policy_file(run: Run) -> None:
    lambda_functions = run.config["stages"][STAGE]["lambda_functions"]
    for function in FUNCTIONS:
        policy_file = run.project / ".chalice" / lambda_functions[function]["iam_policy_file"]
        assert run.role_policies[NAMES.function_name(function)] == [json.loads(policy_file.read_text())], function


def test_the_rest_api_serves_every_route(run: Run) -> None:
    assert run.routes == ROUTES


def _assert_stream_mapping(mapping: dict[str, Any], run: Run) -> None:
    sqs = _client(run, "sqs")
    url = sqs.get_queue_url(QueueName=NAMES.stream_failures_queue)["QueueUrl"]
    failures_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert mapping["EventSourceArn"] == run.config["stages"][STAGE]["environment_variables"]["CURRENCIES_STREAM_ARN"]
    assert mapping["StartingPosition"] == STREAM_MAPPING.starting_position
    assert mapping["BatchSize"] == STREAM_MAPPING.batch_size
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is STREAM_MAPPING.bisect_batch_on_function_error
    assert mapping["MaximumRetryAttempts"] == STREAM_MAPPING.maximum_retry_attempts
    assert mapping["MaximumRecordAgeInSeconds"] == STREAM_MAPPING.maximum_record_age_s
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": failures_arn}}


def _assert_queue_mapping(mapping: dict[str, Any]) -> None:
    assert mapping["EventSourceArn"].endswith(f":{NAMES.queue}")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == QUEUE_MAPPING.batch_size
    assert mapping["MaximumBatchingWindowInSeconds"] == QUEUE_MAPPING.maximum_batching_window_s


def test_configure_mappings_sets_every_setting_chalice_cannot(run: Run) -> None:
    assert set(run.mappings) == {NAMES.function_name("relay_changes"), NAMES.function_name("index_changes")}
    _assert_stream_mapping(run.mappings[NAMES.function_name("relay_changes")], run)
    _assert_queue_mapping(run.mappings[NAMES.function_name("index_changes")])
    assert "ReportBatchItemFailures" in run.outputs["configure-mappings"]


def test_a_redeploy_keeps_the_mapping_settings(run: Run) -> None:
    after = run.mappings_after_redeploy
    _assert_stream_mapping(after[NAMES.function_name("relay_changes")], run)
    # Chalice sets the batch size and window again from app.py, which reads the values provision wrote.
    _assert_queue_mapping(after[NAMES.function_name("index_changes")])
    assert not any(run.changed_after_redeploy.values())


def test_chalice_delete_removes_functions_api_and_mappings(run: Run) -> None:
    assert run.left_after_delete == {"functions": [], "apis": [], "mappings": []}


def test_provision_brings_drifted_resources_back_and_says_so(moto_url: str) -> None:
    """A queue whose redrive or timeout differs, a table without recovery: updated, and reported as such."""
    names = StageNames("drift")
    aws = aws_environment(moto_url)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws.items():
            patch.setenv(name, value)
        session = boto3.Session()
        sqs, dynamodb = session.client("sqs"), session.client("dynamodb")
        dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue)["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
        sqs.create_queue(QueueName=names.queue, Attributes={"VisibilityTimeout": "5", "RedrivePolicy": redrive})
        dynamodb.create_table(
            TableName=names.table,
            AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        report = provision_stage("drift", session, SearchAccess(), deletion_protection=True)
        outcomes = {step.resource: step.outcome for step in report.steps}
        assert outcomes == {
            "table": "updated",  # deletion protection turned on
            "point-in-time recovery": "updated",
            "topic": "created",
            "dead-letter queue": "found",
            "queue": "updated",
            "queue policy": "created",
            "subscription": "created",
            "stream-failures queue": "created",
        }
        queue_url = sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
        queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        assert int(queue["VisibilityTimeout"]) == QUEUE_VISIBILITY_TIMEOUT_S
        assert int(json.loads(queue["RedrivePolicy"])["maxReceiveCount"]) == MAX_RECEIVE_COUNT
        assert dynamodb.describe_table(TableName=names.table)["Table"]["DeletionProtectionEnabled"] is True
        again = provision_stage("drift", session, SearchAccess(), deletion_protection=True)
        assert again.created_nothing, again.steps


def test_configure_mappings_before_a_deploy_says_what_to_run(moto_url: str) -> None:
    aws = {**aws_environment(moto_url), "COLUMNS": "200"}
    result = CliRunner().invoke(configure_mappings, ["--stage", "undeployed"], env=aws)
    assert result.exit_code == 2, result.output
    assert "run chalice deploy --stage undeployed first" in result.output
