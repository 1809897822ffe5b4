"""Least privilege: each function's policy allows exactly the permission table (tests/unit/iam_permissions.py).

Three independent views must agree: the policies (`currencies_ops.deploy.policies`), the
table (written from the code and AWS's documentation), and the calls the code really
makes (recorded in-process against moto). parliament checks each policy's form;
moto's offline evaluator checks what it allows.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import parliament
import pytest
from moto import mock_aws
from moto.dynamodbstreams.models import dynamodbstreams_backends
from moto.iam.access_control import IAMPolicy, PermissionResult
from opensearchpy import Urllib3HttpConnection
from opensearchpy.connection.base import Connection

from chalicelib import clients
from chalicelib.api.currency import CurrencyRate
from chalicelib.api.history import HistoryQuery
from chalicelib.consumer.indexer import consume
from chalicelib.consumer.sqs_batch import BatchIncomplete, inbound_messages, settle
from chalicelib.observability.queues import sample_depths
from chalicelib.sinks.credentials import CredentialsUnavailable, read_secret
from chalicelib.stream.relay import relay
from currencies_local.lambda_events import dynamodb_event, sqs_event
from currencies_ops.deploy.policies import (
    PolicyError,
    SearchAccess,
    configure_stage_policies,
    for_cloudformation,
    policy_documents,
    policy_path,
    write_policy_files,
)
from currencies_ops.deploy.stack import FUNCTIONS, StageArns, StageNames
from tests.unit.iam_permissions import PERMISSIONS, SEARCH_PERMISSIONS, SearchKind, context, pairs, search_access

PROJECT = Path(__file__).resolve().parents[2]
STAGE, REGION, ACCOUNT = "dev", "eu-west-1", "123456789012"
NEIGHBOURS = [("prod", REGION, ACCOUNT), (STAGE, "us-east-1", ACCOUNT), (STAGE, REGION, "210987654321")]
KINDS: list[SearchKind] = ["none", "secretsmanager", "ssm", "es", "aoss"]


def documents(kind: SearchKind, stage: str = STAGE, region: str = REGION, account: str = ACCOUNT) -> dict[str, dict]:
    arns = StageArns(StageNames(stage), region, account)
    return policy_documents(arns, search_access(kind, stage, region, account))


def permitted(document: dict[str, Any], action: str, resource: str) -> bool:
    return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource) == PermissionResult.PERMITTED


def grants(document: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(Sid, action, resource pattern) for every action x resource of every statement."""
    for statement in document["Statement"]:
        resources = statement["Resource"]
        for action, resource in itertools.product(
            statement["Action"], [resources] if isinstance(resources, str) else resources
        ):
            yield statement["Sid"], action, resource


def matches(pattern: str, resource: str) -> bool:
    """IAM's resource matching: `*` any run of characters, `?` one character, case-sensitive."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, resource) is not None


def violations(function: str, document: dict[str, Any], kind: SearchKind) -> list[str]:
    """Everything wrong with `document` as `function`'s policy, measured against the table."""
    needed = pairs(function, kind, STAGE, REGION, ACCOUNT)
    found = [f"needed but not allowed: {pair}" for pair in sorted(needed) if not permitted(document, *pair)]
    neighbours: set[tuple[str, str]] = set()
    for stage, region, account in NEIGHBOURS:
        neighbours |= pairs(function, kind, stage, region, account)
    for other in FUNCTIONS:
        neighbours |= pairs(other, kind, STAGE, REGION, ACCOUNT)
    found += [f"allowed but not needed: {pair}" for pair in sorted(neighbours - needed) if permitted(document, *pair)]
    found += [
        f"{sid} grants {action} on {resource}, which no pair of the table uses"
        for sid, action, resource in grants(document)
        if not any(a == action and matches(resource, r) for a, r in needed)
    ]
    return found


# --- The evaluator itself: the checks below can only fail if it tells these apart. -------------------


def test_the_evaluator_tells_a_grant_from_its_neighbours() -> None:
    queue = "arn:aws:sqs:eu-west-1:123456789012:currency-dev-queue"
    exact = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": queue}],
    }
    assert permitted(exact, "sqs:SendMessage", queue)
    assert not permitted(exact, "sqs:SendMessage", queue.replace("dev", "prod"))
    assert not permitted(exact, "sqs:SendMessage", "*")  # a request for `*` is not a specific queue
    assert not permitted(exact, "sqs:ReceiveMessage", queue)
    wide = {**exact, "Statement": [{**exact["Statement"][0], "Resource": "arn:aws:sqs:*:*:currency-*"}]}
    assert permitted(wide, "sqs:SendMessage", queue.replace("eu-west-1", "us-east-1"))
    star = {**exact, "Statement": [{"Effect": "Allow", "Action": ["dynamodb:ListStreams"], "Resource": "*"}]}
    assert permitted(star, "dynamodb:ListStreams", "*")


@pytest.mark.parametrize(
    "widen",
    [
        lambda r: r.replace(":currency-dev-", ":currency-*-") if isinstance(r, str) else r,
        lambda r: r.replace("eu-west-1", "*") if isinstance(r, str) else r,
        lambda r: r.replace("123456789012", "*") if isinstance(r, str) else r,
    ],
    ids=["any-stage", "any-region", "any-account"],
)
def test_a_widened_policy_is_caught(widen: Any) -> None:
    document = documents("es")["relay_changes"]
    widened = {
        **document,
        "Statement": [{**s, "Resource": [widen(r) for r in s["Resource"]]} for s in document["Statement"]],
    }
    assert violations("relay_changes", widened, "es")


def test_an_unused_or_missing_grant_is_caught() -> None:
    document = documents("none")["tidy_metrics"]
    extra = {"Sid": "Extra", "Effect": "Allow", "Action": ["sqs:PurgeQueue"], "Resource": ["arn:aws:sqs:x:1:q"]}
    assert violations("tidy_metrics", {**document, "Statement": [*document["Statement"], extra]}, "none")
    assert violations("tidy_metrics", {**document, "Statement": document["Statement"][1:]}, "none")


# --- The policies against the table. ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_policy_allows_exactly_its_table(function: str, kind: SearchKind) -> None:
    assert violations(function, documents(kind)[function], kind) == []


@pytest.mark.parametrize("kind", KINDS)
def test_no_wildcard_action_account_or_region(kind: SearchKind) -> None:
    for function, document in documents(kind).items():
        for sid, action, resource in grants(document):
            assert "*" not in action, (function, sid, action)
            assert "?" not in action, (function, sid, action)
            if resource == "*":
                assert action == "dynamodb:ListStreams", (function, sid)  # IAM has no resource for it
                continue
            _, partition, _, region, account, _ = resource.split(":", 5)
            assert (partition, region, account) == ("aws", REGION, ACCOUNT), (function, sid, resource)


def test_the_functions_are_kept_apart() -> None:
    """The examples issue 9 names, stated directly (the table test covers them all)."""
    docs = documents("es")
    values = context(STAGE, REGION, ACCOUNT)
    assert not permitted(docs["api_handler"], "sns:Publish", values["topic"])
    assert not permitted(docs["api_handler"], "es:ESHttpPost", f"{values['domain']}/_bulk")
    assert not permitted(docs["index_changes"], "dynamodb:PutItem", values["table"])
    assert not permitted(docs["index_changes"], "es:ESHttpPost", f"{values['domain']}/{values['events_index']}/_search")
    assert not permitted(docs["relay_changes"], "es:ESHttpPost", f"{values['domain']}/{values['events_index']}/_search")
    assert not permitted(docs["relay_changes"], "dynamodb:GetItem", values["table"])
    assert not permitted(docs["tidy_metrics"], "sqs:ReceiveMessage", values["queue"])
    secret = documents("secretsmanager")
    for function in ("relay_changes", "tidy_metrics"):
        assert not permitted(secret[function], "secretsmanager:GetSecretValue", values["secret"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_parliament_finds_nothing(function: str, kind: SearchKind) -> None:
    policy = parliament.analyze_policy_string(json.dumps(documents(kind)[function]), include_community_auditors=True)
    assert [(f.issue, f.detail) for f in policy.findings] == []


def test_parliament_would_flag_a_mistake() -> None:
    """The check above can fail: ListStreams on the stream ARN, as AWS's own example writes it."""
    document = documents("none")["relay_changes"]
    wrong = [
        {**s, "Resource": [StageArns(StageNames(STAGE), REGION, ACCOUNT).table_streams]}
        if s["Action"] == ["dynamodb:ListStreams"]
        else s
        for s in document["Statement"]
    ]
    policy = parliament.analyze_policy_string(json.dumps({**document, "Statement": wrong}))
    assert [f.issue for f in policy.findings] == ["RESOURCE_MISMATCH"]


# --- The table against the code: record what the code calls, in-process against moto. -------------

_ACTION_OF = {("sns", "PublishBatch"): "sns:Publish", ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage"}


class Recorder:
    """(function, action, resource) of every AWS call and every search request made while recording."""

    def __init__(self) -> None:
        self.function: str | None = None
        self.calls: set[tuple[str, str, str]] = set()
        self.http: set[tuple[str, str, str]] = set()
        """(function, HTTP method, path)."""

    @contextlib.contextmanager
    def recording(self, function: str) -> Iterator[None]:
        self.function = function
        try:
            yield
        finally:
            self.function = None

    def on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.function is None:
            return
        service, operation = model.service_model.service_name, model.name
        action = _ACTION_OF.get((service, operation), f"{service}:{operation}")
        self.calls.add((self.function, action, _resource_of(service, params)))

    def boto_pairs(self, function: str, kind: SearchKind) -> set[tuple[str, str]]:
        """The AWS calls; the secret readers' only with the kind of secret the stage uses."""
        other_secrets = {"secretsmanager", "ssm"} - {kind}
        return {
            (action, resource)
            for f, action, resource in self.calls
            if f == function and action.split(":")[0] not in other_secrets
        }

    def search_pairs(self, function: str, kind: SearchKind) -> set[tuple[str, str]]:
        values = context(STAGE, REGION, ACCOUNT)
        requests = {(method, path) for f, method, path in self.http if f == function}
        if kind == "es":
            return {(f"es:ESHttp{method.title()}", values["domain"] + path) for method, path in requests}
        if kind == "aoss":
            return {("aoss:APIAccessAll", values["collection"]) for _ in requests}
        return set()


def _resource_of(service: str, params: dict[str, Any]) -> str:
    if "TableName" in params:
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"
    if "TopicArn" in params:
        return params["TopicArn"]
    if "QueueUrl" in params:
        account, name = params["QueueUrl"].rstrip("/").split("/")[-2:]
        return f"arn:aws:sqs:{REGION}:{account}:{name}"
    if "SecretId" in params or "Name" in params:  # read by ARN
        return params.get("SecretId") or params["Name"]
    if "QueueName" in params:
        return f"arn:aws:sqs:{REGION}:{params.get('QueueOwnerAWSAccountId', ACCOUNT)}:{params['QueueName']}"
    return f"unknown {service} resource in {sorted(params)}"


_ENGINE_RATES_INDEX = StageNames(STAGE).rates_index


def fake_engine_request(self: Connection, method: str, url: str, params: Any = None, body: Any = None, **_: Any) -> Any:
    """An OpenSearch node answering like an empty cluster, refusing the rate of symbol BAD; records the request."""
    recorder: Recorder = self.recorder  # type: ignore[attr-defined]
    if recorder.function is not None:
        recorder.http.add((recorder.function, method, url.split("?", maxsplit=1)[0]))
    if method == "GET" and url.startswith("/_index_template/"):
        self._raise_error(404, '{"error": "index_template_missing_exception"}', "application/json")
    if method == "HEAD":
        self._raise_error(404, "", None)
    if url == "/_bulk":
        lines = [json.loads(line) for line in body.decode().splitlines() if line]
        return 200, {}, json.dumps({"took": 1, "errors": False, "items": [_bulk_item(meta) for meta in lines[::2]]})
    if url.endswith("/_search"):
        return 200, {}, json.dumps({"hits": {"total": {"value": 0}, "hits": []}})
    return 200, {}, json.dumps({"acknowledged": True})


def _bulk_item(meta: dict[str, Any]) -> dict[str, Any]:
    ((operation, target),) = meta.items()
    if target["_index"] == _ENGINE_RATES_INDEX and target["_id"] == "BAD":
        return {operation: {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "refused"}}}
    return {operation: {"status": 201, "_index": target["_index"], "_id": target["_id"]}}


def _clear_client_caches() -> None:
    for value in vars(clients).values():
        if hasattr(value, "cache_clear"):
            value.cache_clear()


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """The pipeline's functions run once each, through `chalicelib.clients` as app.py wires them."""
    names = StageNames(STAGE)
    arns = StageArns(names, REGION, ACCOUNT)
    for variable in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "CURRENCIES_PUSHGATEWAY_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    recorder = Recorder()
    monkeypatch.setattr(Urllib3HttpConnection, "perform_request", fake_engine_request)
    monkeypatch.setattr(Urllib3HttpConnection, "recorder", recorder, raising=False)
    with mock_aws():
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-parameter-build.*.*", recorder.on_call)
        dynamodb, sns, sqs = boto3.client("dynamodb"), boto3.client("sns"), boto3.client("sqs")
        table = dynamodb.create_table(
            TableName=names.table,
            KeySchema=[{"AttributeName": "symbol", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "symbol", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )["TableDescription"]
        topic_arn = sns.create_topic(Name=names.topic)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=names.queue)["QueueUrl"]
        dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue)["QueueUrl"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arns.queue)
        env = {
            "CURRENCIES_TABLE": names.table,
            "CURRENCIES_STREAM_ARN": table["LatestStreamArn"],
            "CURRENCIES_TOPIC_ARN": topic_arn,
            "CURRENCIES_QUEUE": names.queue,
            "CURRENCIES_DLQ_URL": dlq_url,
            "CURRENCIES_EVENTS_INDEX": names.events_index,
            "CURRENCIES_RATES_INDEX": names.rates_index,
            "CURRENCIES_SEARCH_ENGINE": "opensearch",
            "CURRENCIES_SEARCH_URL": "http://search.invalid:9200",
            "CURRENCIES_SEARCH_AUTH": "none",
        }
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        _clear_client_caches()
        try:
            _run_pipeline(recorder, table["LatestStreamArn"], queue_url)
            yield recorder
        finally:
            _clear_client_caches()


def _read_search_credentials() -> None:
    """What a container does first with basic or API-key auth, from either kind of secret.

    Only the call is of interest here (`before-parameter-build` records it before it is
    sent); the table's secret does not exist in moto, so reading it fails.
    """
    values = context(STAGE, REGION, ACCOUNT)
    for arn in (values["secret"], values["parameter"]):
        with contextlib.suppress(CredentialsUnavailable):
            read_secret(arn, session=boto3.DEFAULT_SESSION)


def _run_pipeline(recorder: Recorder, stream_arn: str, queue_url: str) -> None:
    settings = clients.settings()
    with recorder.recording("api_handler"):
        store = clients.store()
        for symbol, rate in [("EUR", "1.1"), ("EUR", "1.2"), ("BAD", "2"), ("GBP", "0.8")]:
            store.put(CurrencyRate(symbol, Decimal(rate)))  # create (PutItem), then update (UpdateItem)
        assert store.get("EUR") is not None
        assert len(store.list()) == 3
        store.delete("GBP")
        clients.history().history(HistoryQuery("EUR"))
        _read_search_credentials()

    # What Lambda's stream mapping does (not recorded), straight from moto's backend: mock_aws
    # does not route the dynamodbstreams endpoint in-process (404 "Not yet implemented").
    streams = dynamodbstreams_backends[ACCOUNT][REGION]
    shard = streams.describe_stream(stream_arn)["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(stream_arn, shard, "TRIM_HORIZON", None)
    records = streams.get_records(iterator.arn, 100)["Records"]
    event = dynamodb_event(records, stream_arn, REGION)
    with recorder.recording("relay_changes"):
        unconvertible = {"eventID": "x", "eventName": "INSERT", "dynamodb": {}}  # dead-lettered
        report = relay(
            [*event["Records"], unconvertible],
            sns=clients.sns(),
            topic_arn=settings.topic_arn,
            dead_letter=clients.dead_letter_queue("stream"),
        )
        assert report.retry_from is None
        assert report.counts["dead_lettered"] == 1

    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=queue_url, MessageBody="not a change")  # dead-lettered by the consumer
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(messages) == len(records) + 1
    queue_arn = StageArns(StageNames(STAGE), REGION, ACCOUNT).queue
    sqs_records = sqs_event(messages, queue_arn, REGION)["Records"]
    with recorder.recording("index_changes"):
        _read_search_credentials()
        report = consume(
            inbound_messages(sqs_records),
            clients.sink(),
            events_index=settings.events_index,
            rates_index=settings.rates_index,
            dead_letter=clients.dead_letter_queue("consumer"),
            max_receives=settings.max_receives,
        )
        assert len(report.failed_ids) == 1  # the BAD rate: the rest is deleted by the handler itself
        with pytest.raises(BatchIncomplete):
            settle(sqs_records, report, partial_response=False, sqs=clients.sqs)

    with recorder.recording("tidy_metrics"):
        assert set(sample_depths(clients.sqs(), clients.queue_urls())) == {"consumer", "dead_letter"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_table_lists_exactly_what_the_code_calls(recorded: Recorder, function: str) -> None:
    for kind in KINDS:
        called = recorded.boto_pairs(function, kind) | recorded.search_pairs(function, kind)
        assert called == pairs(function, kind, STAGE, REGION, ACCOUNT, sources=("code",)), kind


def test_every_table_entry_has_a_known_source() -> None:
    for uses in [*PERMISSIONS.values(), *(u for by_fn in SEARCH_PERMISSIONS.values() for u in by_fn.values())]:
        assert all(use.source in ("runtime", "mapping", "code") for use in uses)


# --- Rendering, files and config. --------------------------------------------------------------------


def test_for_cloudformation_wraps_exactly_the_placeholders() -> None:
    arns = StageArns(StageNames("prod"), "${AWS::Region}", "${AWS::AccountId}")
    search = SearchAccess("sigv4", domain_arn="arn:aws:es:eu-west-1:123456789012:domain/currencies-prod")
    for function, document in policy_documents(arns, search).items():
        rendered = for_cloudformation(document)
        seen = 0
        for plain, statement in zip(document["Statement"], rendered["Statement"], strict=True):
            assert {k: v for k, v in statement.items() if k != "Resource"} == {
                k: v for k, v in plain.items() if k != "Resource"
            }
            for before, after in zip(plain["Resource"], statement["Resource"], strict=True):
                assert after == ({"Fn::Sub": before} if "${" in before else before), (function, before)
                seen += "${" in before
        assert seen, function  # the logs at least are in the stack's account and region
    concrete = documents("es")
    assert {f: for_cloudformation(d) for f, d in concrete.items()} == concrete


def test_policy_files_are_written_per_function(tmp_path: Path) -> None:
    docs = documents("ssm")
    written = write_policy_files(tmp_path, STAGE, docs)
    assert written == [tmp_path / ".chalice" / "policies" / STAGE / f"{f}.json" for f in FUNCTIONS]
    for path, function in zip(written, FUNCTIONS, strict=True):
        text = path.read_text()
        assert text == json.dumps(docs[function], indent=2) + "\n"
        assert json.loads(text) == docs[function]


def test_configure_stage_policies_points_each_function_at_its_file() -> None:
    config = {
        "autogen_policy": True,
        "stages": {
            "dev": {
                "iam_policy_file": "policy-dev.json",
                "lambda_functions": {"api_handler": {"lambda_memory_size": 512}},
            }
        },
    }
    configure_stage_policies(config, "dev")
    stage = config["stages"]["dev"]
    assert "iam_policy_file" not in stage
    assert stage["autogen_policy"] is False
    assert stage["lambda_functions"]["api_handler"]["lambda_memory_size"] == 512  # other settings are kept
    assert {f: c["iam_policy_file"] for f, c in stage["lambda_functions"].items()} == {
        f: f"policies/dev/{f}.json" for f in FUNCTIONS
    }
    configure_stage_policies(config, "prod")
    assert config["stages"]["prod"]["lambda_functions"]["tidy_metrics"]["iam_policy_file"] == policy_path(
        "prod", "tidy_metrics"
    )


def test_the_dev_stage_uses_generated_per_function_policies() -> None:
    config = json.loads((PROJECT / ".chalice" / "config.json").read_text())
    dev = config["stages"]["dev"]
    assert "iam_policy_file" not in dev
    assert {f: dev["lambda_functions"][f]["iam_policy_file"] for f in FUNCTIONS} == {
        f: policy_path("dev", f) for f in FUNCTIONS
    }
    assert ".chalice/policies/" in (PROJECT / ".gitignore").read_text().splitlines()
    assert not (PROJECT / ".chalice" / "policy-dev.json").exists()


# --- Reading the stage's settings. -------------------------------------------------------------------

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:currencies/dev/search-AbC123"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, SearchAccess()),
        ({"CURRENCIES_SEARCH_AUTH": "basic", "CURRENCIES_SEARCH_SECRET_ARN": SECRET}, SearchAccess("basic", SECRET)),
        (
            {"CURRENCIES_SEARCH_AUTH": "none", "CURRENCIES_SEARCH_SECRET_ARN": SECRET},
            SearchAccess(),  # an ARN the auth does not use grants nothing
        ),
        (
            {
                "CURRENCIES_SEARCH_AUTH": "sigv4",
                "CURRENCIES_SEARCH_DOMAIN_ARN": "arn:aws:aoss:eu-west-1:123456789012:collection/abc123",
                "CURRENCIES_SEARCH_SIGV4_SERVICE": "aoss",
                "CURRENCIES_EVENTS_INDEX": "ev",
            },
            SearchAccess(
                "sigv4", domain_arn="arn:aws:aoss:eu-west-1:123456789012:collection/abc123", events_index="ev"
            ),
        ),
    ],
)
def test_search_access_from_environment(env: dict[str, str], expected: SearchAccess) -> None:
    assert SearchAccess.from_environment(env) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CURRENCIES_SEARCH_AUTH": "basic"}, "CURRENCIES_SEARCH_SECRET_ARN"),
        (
            {"CURRENCIES_SEARCH_AUTH": "api_key", "CURRENCIES_SEARCH_SECRET_ARN": SECRET.replace("eu-west-1", "*")},
            "ARN",
        ),
        ({"CURRENCIES_SEARCH_AUTH": "basic", "CURRENCIES_SEARCH_SECRET_ARN": "arn:aws:s3:::bucket"}, "ARN"),
        ({"CURRENCIES_SEARCH_AUTH": "sigv4"}, "CURRENCIES_SEARCH_DOMAIN_ARN"),
        (
            {"CURRENCIES_SEARCH_AUTH": "sigv4", "CURRENCIES_SEARCH_DOMAIN_ARN": "arn:aws:es:eu-west-1:*:domain/x"},
            "CURRENCIES_SEARCH_DOMAIN_ARN",
        ),
        (
            {
                "CURRENCIES_SEARCH_AUTH": "sigv4",
                "CURRENCIES_SEARCH_DOMAIN_ARN": "arn:aws:es:eu-west-1:123456789012:domain/currencies",
                "CURRENCIES_SEARCH_SIGV4_SERVICE": "aoss",
            },
            "CURRENCIES_SEARCH_SIGV4_SERVICE",
        ),
        ({"CURRENCIES_SEARCH_AUTH": "password"}, "CURRENCIES_SEARCH_AUTH"),
    ],
)
def test_search_access_refuses_what_cannot_be_least_privilege(env: dict[str, str], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        SearchAccess.from_environment(env)
