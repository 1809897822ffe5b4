"""The `chalice package --merge-template` path, without an AWS account.

One `currencies package --stage prod` build (in a copy of the project, with fake AWS
credentials in the environment that must not reach the artifact) is linted with cfn-lint as
SAM, translated to plain CloudFormation with aws-sam-translator and linted again (cfn-lint
misses some SAM property typos until then), and its non-API part is created as a stack in a
moto server of its own, where every event source mapping setting is read back.

moto cannot create the REST API from a translated template, nor invoke functions (no
Docker): the API resources are left out, and `AWS::SNS::Subscription` /
`AWS::SQS::QueuePolicy` report CREATE_COMPLETE in moto but create nothing, so those two are
checked on the template.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from currencies_local.moto import aws_environment, start_moto
from currencies_local.pipeline import PROJECT_DIR
from currencies_local.processes import free_port
from currencies_ops.deploy import template
from currencies_ops.deploy.package_command import FRAGMENT_FILE
from currencies_ops.deploy.stack import (
    MAX_RECEIVE_COUNT,
    QUEUE_MAPPING,
    QUEUE_VISIBILITY_TIMEOUT_S,
    STREAM_MAPPING,
    StageNames,
)
from tests.cloudformation import references

STAGE = "prod"
REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account
BUCKET = "currencies-artifacts"
FAKE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDENTIAL_PATTERNS = (
    re.compile(rb"A[KS]IA[0-9A-Z]{16}"),
    # A credentials-file or JSON entry with a value; the code's own `env.get("AWS_SECRET_ACCESS_KEY")` is no leak.
    re.compile(rb"aws_secret_access_key[\"']?\s*[=:]\s*[\"']?[A-Za-z0-9/+]{20,}", re.IGNORECASE),
    re.compile(re.escape(FAKE_SECRET.encode())),
)
PROJECT_FILES = ("app.py", "chalicelib", "requirements.txt", "vendor", ".chalice/config.json", ".chalice/deployments")
"""What `chalice package` reads (and its cache of downloaded wheels)."""


def project_copy(destination: Path) -> Path:
    """A copy of the Chalice project, so packaging never writes into the work tree."""
    for name in PROJECT_FILES:
        source = PROJECT_DIR / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def run_package(project: Path, stage: str, out: Path) -> subprocess.CompletedProcess[str]:
    """`currencies package` as a user runs it, with AWS credentials in the environment it must drop, and
    a shell setting from local work that must not open the packaged API (config.json decides)."""
    env = {
        **os.environ,
        "CURRENCIES_WRITE_AUTH": "none",
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": REGION,
    }
    command = [
        sys.executable,
        "-c",
        "from currencies_ops.deploy.package_command import package; package()",
        "--stage",
        stage,
        "--out",
        str(out),
        "--project-dir",
        str(project),
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)


@dataclass(frozen=True)
class Build:
    out: Path
    project: Path
    sam: dict[str, Any]
    seconds: float

    @property
    def resources(self) -> dict[str, Any]:
        return self.sam["Resources"]


@pytest.fixture(scope="module")
def build() -> Iterator[Build]:
    work = Path(tempfile.mkdtemp(prefix="currencies-cfn-"))
    project = project_copy(work / "project")
    started = time.monotonic()
    result = run_package(project, STAGE, work / "out")
    assert result.returncode == 0, result.stdout + result.stderr
    sam = json.loads((work / "out" / "sam.json").read_text())
    yield Build(work / "out", project, sam, time.monotonic() - started)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def translated(build: Build) -> dict[str, Any]:
    """Plain CloudFormation, as the SAM transform makes it once the zip is in S3 (`aws cloudformation package`)."""
    sam = json.loads(json.dumps(build.sam))
    for body in sam["Resources"].values():
        if body["Type"] == "AWS::Serverless::Function":
            body["Properties"]["CodeUri"] = f"s3://{BUCKET}/deployment.zip"
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=REGION))
    return translator.translate(sam, parameter_values={}, get_managed_policy_map=dict)


def cfn_lint(path: Path) -> subprocess.CompletedProcess[str]:
    linter = Path(sys.executable).with_name("cfn-lint")
    return subprocess.run([str(linter), str(path)], capture_output=True, text=True, timeout=300, check=False)


def test_the_merged_sam_template_passes_cfn_lint(build: Build) -> None:
    result = cfn_lint(build.out / "sam.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_its_translation_to_plain_cloudformation_passes_cfn_lint(translated: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "translated.json"
    path.write_text(json.dumps(translated, indent=1))
    result = cfn_lint(path)
    assert result.returncode == 0, result.stdout + result.stderr
    types = {body["Type"] for body in translated["Resources"].values()}
    assert not any(kind.startswith("AWS::Serverless::") for kind in types)


def test_the_fragment_lands_in_chalices_resources_not_beside_them(build: Build) -> None:
    """A fragment key that misses Chalice's logical id would leave a typeless stub (the command refuses it)."""
    assert all("Type" in body for body in build.resources.values())
    events = build.resources[template.FUNCTION_IDS["relay_changes"]]["Properties"]["Events"]
    assert list(events) == [template.STREAM_EVENT]
    assert events[template.STREAM_EVENT]["Properties"]["StartingPosition"] == STREAM_MAPPING.starting_position
    queue_event = build.resources[template.FUNCTION_IDS["index_changes"]]["Properties"]["Events"]
    assert list(queue_event) == [template.QUEUE_EVENT]
    # Chalice's own Fn::Sub of the queue's ARN is left as it was: replacing it breaks the merge.
    assert set(queue_event[template.QUEUE_EVENT]["Properties"]["Queue"]) == {"Fn::Sub"}


def test_the_api_definition_keeps_chalices_routes_and_gains_the_gateway_responses(
    build: Build, translated: dict[str, Any]
) -> None:
    """Merged into Chalice's definition (not beside it), so the deployed API answers its own refusals so too."""
    body = build.resources[template.REST_API]["Properties"]["DefinitionBody"]
    assert "/currency" in body["paths"]  # Chalice's part, still there
    assert body["securityDefinitions"]
    assert body["x-amazon-apigateway-gateway-responses"] == template.gateway_responses()
    (rest_api,) = [
        resource for resource in translated["Resources"].values() if resource["Type"] == "AWS::ApiGateway::RestApi"
    ]
    assert rest_api["Properties"]["Body"]["x-amazon-apigateway-gateway-responses"] == template.gateway_responses()


def test_the_artifact_holds_no_credentials(build: Build) -> None:
    files = [build.out / "sam.json", build.out / FRAGMENT_FILE]
    with zipfile.ZipFile(build.out / "deployment.zip") as archive:
        blobs = {f"deployment.zip:{name}": archive.read(name) for name in archive.namelist()}
    blobs.update({str(path): path.read_bytes() for path in files})
    for policy in (build.project / ".chalice" / "policies" / STAGE).glob("*.json"):
        blobs[str(policy)] = policy.read_bytes()
    leaks = {
        name: pattern.pattern for name, blob in blobs.items() for pattern in CREDENTIAL_PATTERNS if pattern.search(blob)
    }
    assert leaks == {}
    assert len(blobs) > 10, "the zip was read"


def test_the_template_names_the_region_only_through_cloudformation(build: Build) -> None:
    """The template deploys to any region and account: no packaging region or account is baked into ARNs."""
    text = json.dumps(build.resources)
    assert f":{REGION}:" not in text
    assert "${AWS::Region}" in text
    assert "${AWS::AccountId}" in text


def test_the_queue_accepts_only_the_stages_topic(translated: dict[str, Any]) -> None:
    # moto accepts AWS::SQS::QueuePolicy and AWS::SNS::Subscription but creates neither: check them here.
    resources = translated["Resources"]
    [statement] = resources[template.QUEUE_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": template.TOPIC}}}
    assert statement["Resource"] == {"Fn::GetAtt": [template.QUEUE, "Arn"]}
    subscription = resources[template.SUBSCRIPTION]["Properties"]
    assert subscription["TopicArn"] == {"Ref": template.TOPIC}
    assert subscription["Endpoint"] == {"Fn::GetAtt": [template.QUEUE, "Arn"]}
    table = resources[template.TABLE]["Properties"]
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


# --- the stack in moto --------------------------------------------------------------------------------


def without_rest_api(cloudformation: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The template less the REST API and everything that refers to it (the API's invoke permission, outputs)."""
    resources = cloudformation["Resources"]
    dropped = {name for name, body in resources.items() if body["Type"].startswith("AWS::ApiGateway::")}
    while True:
        more = {name for name, body in resources.items() if name not in dropped and references(body) & dropped}
        if not more:
            break
        dropped |= more
    kept = {name: body for name, body in resources.items() if name not in dropped}
    outputs = {name: body for name, body in cloudformation.get("Outputs", {}).items() if not references(body) & dropped}
    return {**cloudformation, "Resources": kept, "Outputs": outputs}, dropped


@dataclass(frozen=True)
class Stack:
    status: str
    outputs: dict[str, str]
    dropped: set[str]
    seconds: float


@pytest.fixture(scope="module")
def moto_env() -> Iterator[dict[str, str]]:
    port = free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="currencies-cfn-moto-"))
    server = start_moto("127.0.0.1", port, log_dir)
    env = {**aws_environment(f"http://127.0.0.1:{port}"), "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()
    shutil.rmtree(log_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(build: Build, translated: dict[str, Any], moto_env: dict[str, str]) -> Stack:
    body, dropped = without_rest_api(translated)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.upload_file(str(build.out / "deployment.zip"), BUCKET, "deployment.zip")
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    started = time.monotonic()
    cloudformation.create_stack(
        StackName=f"currencies-{STAGE}", TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"]
    )
    deadline = started + 120
    while True:
        [description] = cloudformation.describe_stacks(StackName=f"currencies-{STAGE}")["Stacks"]
        if not description["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    outputs = {output["OutputKey"]: output["OutputValue"] for output in description.get("Outputs", [])}
    return Stack(description["StackStatus"], outputs, dropped, time.monotonic() - started)


def test_only_the_rest_api_is_left_out_of_the_moto_stack(stack: Stack) -> None:
    assert stack.status == "CREATE_COMPLETE"
    assert stack.dropped == {name for name in stack.dropped if "RestAPI" in name} | {"APIHandlerInvokePermission"}


def test_the_table_is_on_demand_streams_both_images_and_is_protected(stack: Stack) -> None:
    table = boto3.client("dynamodb", region_name=REGION).describe_table(TableName=StageNames(STAGE).table)["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert table["DeletionProtectionEnabled"] is True
    assert table["KeySchema"] == [{"AttributeName": "symbol", "KeyType": "HASH"}]
    assert stack.outputs["TableStreamArn"] == table["LatestStreamArn"]
    # moto's CloudFormation ignores PointInTimeRecoverySpecification (it reports DISABLED): checked on the template.


def test_the_queue_redrives_to_its_dead_letter_queue(stack: Stack) -> None:
    names = StageNames(STAGE)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) == QUEUE_VISIBILITY_TIMEOUT_S
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == MAX_RECEIVE_COUNT
    assert redrive["deadLetterTargetArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.dead_letter_queue}"
    for name in (names.dead_letter_queue, names.stream_failures_queue):
        assert sqs.get_queue_url(QueueName=name)["QueueUrl"].endswith(f"/{name}")


def _mappings() -> dict[str, dict[str, Any]]:
    """The stack's event source mappings by the function's logical id (moto names functions <stack>-<id>-<suffix>)."""
    found = {}
    for mapping in boto3.client("lambda", region_name=REGION).list_event_source_mappings()["EventSourceMappings"]:
        function = mapping["FunctionArn"].rsplit(":", 1)[1]
        found[function.split("-")[2]] = mapping
    return found


def test_the_stream_mapping_carries_every_setting(stack: Stack) -> None:
    mapping = _mappings()["RelayChanges"]
    names = StageNames(STAGE)
    assert mapping["EventSourceArn"] == stack.outputs["TableStreamArn"]
    assert mapping["StartingPosition"] == STREAM_MAPPING.starting_position
    assert mapping["BatchSize"] == STREAM_MAPPING.batch_size
    for key, value in STREAM_MAPPING.api_parameters().items():
        assert mapping[key] == value, key
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names.stream_failures_queue}"}
    }


def test_the_queue_mapping_carries_every_setting(stack: Stack) -> None:
    mapping = _mappings()["IndexChanges"]
    assert mapping["EventSourceArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{StageNames(STAGE).queue}"
    assert mapping["BatchSize"] == QUEUE_MAPPING.batch_size
    for key, value in QUEUE_MAPPING.api_parameters().items():
        assert mapping[key] == value, key
    assert mapping["MaximumBatchingWindowInSeconds"] >= 1, "a batch above 10 messages needs a window"


def test_every_function_reads_the_created_resources(stack: Stack) -> None:
    functions = boto3.client("lambda", region_name=REGION).list_functions()["Functions"]
    assert {function["FunctionName"].split("-")[2] for function in functions} == {
        "APIHandler",
        "RelayChanges",
        "IndexChanges",
    }
    for function in functions:
        variables = function["Environment"]["Variables"]
        assert variables["CURRENCIES_STREAM_ARN"] == stack.outputs["TableStreamArn"]
        assert variables["CURRENCIES_TOPIC_ARN"] == stack.outputs["TopicArn"]
        assert variables["CURRENCIES_DLQ_URL"] == stack.outputs["DeadLetterQueueUrl"]
        assert variables["CURRENCIES_TABLE"] == StageNames(STAGE).table
        assert variables["CURRENCIES_PARTIAL_BATCH_RESPONSE"] == "true"


def test_each_role_holds_its_functions_policy_with_this_accounts_arns(stack: Stack) -> None:
    iam = boto3.client("iam", region_name=REGION)
    roles = {role["RoleName"].split("-")[2]: role["RoleName"] for role in iam.list_roles()["Roles"]}
    for function in ("api_handler", "relay_changes", "index_changes"):
        role = roles[template.ROLE_IDS[function]]
        [name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        text = json.dumps(document)
        assert "${" not in text, "CloudFormation resolved every placeholder"
        assert f":{REGION}:{ACCOUNT}:" in text
        assert f"currency-{STAGE}" in text
