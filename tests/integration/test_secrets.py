"""Search credentials from Secrets Manager and SSM (moto server), rotation against a secured engine, and no leaks.

The session's Elasticsearch node runs with security off, so a small reverse proxy in front
of it plays the secured cluster: it requires HTTP Basic auth with its current password and
answers 401 as Elasticsearch does otherwise. Rotating means changing the secret and the
proxy's password, as a rotation Lambda changes the secret and the cluster's user.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from chalicelib import clients
from chalicelib.config import SearchSettings
from chalicelib.consumer.documents import Action
from chalicelib.sinks.credentials import CredentialsRefused, CredentialsUnavailable, read_secret
from chalicelib.sinks.sink import SearchSink, connect
from currencies_local.moto import CREDENTIALS, REGION, start_moto
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import free_port

USERNAME = "currencies-writer"


class AuthProxy:
    """A secured cluster's front door: Basic auth with the current password, then the real node (security off)."""

    def __init__(self, upstream: str, password: str) -> None:
        self.password = password
        self.refused = 0
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: stop() really stops it

            def log_message(self, *_: Any) -> None:
                return None

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                expected = "Basic " + base64.b64encode(f"{USERNAME}:{proxy.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    proxy.refused += 1
                    reason = f"unable to authenticate user [{USERNAME}] for REST request [{self.path}]"
                    error = {"error": {"type": "security_exception", "reason": reason}, "status": 401}
                    self.answer(401, json.dumps(error).encode(), [("WWW-Authenticate", 'Basic realm="security"')])
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "connection")}
                upstream_connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    upstream_connection.request(self.command, self.path, body=body, headers=headers)
                    response = upstream_connection.getresponse()
                    data = response.read()
                finally:
                    upstream_connection.close()
                skip = ("content-length", "transfer-encoding", "connection")
                self.answer(response.status, data, [(k, v) for k, v in response.getheaders() if k.lower() not in skip])

            def answer(self, status: int, data: bytes, headers: list[tuple[str, str]]) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if not any(name.lower() == "content-type" for name, _ in headers):
                    self.send_header("Content-Type", "application/json")
                if not any(name.lower() == "x-elastic-product" for name, _ in headers):
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = relay  # http.server's names

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="auth-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto server of this module's own (Secrets Manager and SSM; the pipeline test provisions the rest)."""
    port = free_port()
    process = start_moto("127.0.0.1", port, Path(tempfile.mkdtemp(prefix="currencies-secrets-")))
    yield f"http://127.0.0.1:{port}"
    process.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3's default lookup (what a Lambda uses) pointed at this module's moto server."""
    for name, value in {**CREDENTIALS, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    return moto_url


def store_secret(store: str, value: dict[str, str]) -> tuple[str, Any]:
    """Store the credentials JSON in Secrets Manager or as an SSM SecureString; its ARN and a rotate function."""
    name = f"currencies/test/search-{uuid.uuid4().hex[:8]}"
    text = json.dumps(value)
    if store == "secretsmanager":
        client = boto3.client("secretsmanager", region_name=REGION)
        arn = client.create_secret(Name=name, SecretString=text)["ARN"]
        return arn, lambda new: client.put_secret_value(SecretId=arn, SecretString=json.dumps(new))
    client = boto3.client("ssm", region_name=REGION)
    client.put_parameter(Name=f"/{name}", Value=text, Type="SecureString")
    arn = client.get_parameter(Name=f"/{name}")["Parameter"]["ARN"]
    return arn, lambda new: client.put_parameter(
        Name=f"/{name}", Value=json.dumps(new), Type="SecureString", Overwrite=True
    )


def unusual_password() -> str:
    return f"Qv7#{uuid.uuid4().hex}!zX"


# --- reading the secret -------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["secretsmanager", "ssm"])
def test_credentials_are_read_from_either_store(aws: str, store: str) -> None:
    password = unusual_password()
    arn, _ = store_secret(store, {"username": USERNAME, "password": password})
    assert json.loads(read_secret(arn)) == {"username": USERNAME, "password": password}
    engine = connect(SearchSettings(auth="basic", secret_arn=arn, url="http://127.0.0.1:9"))
    provider = engine._credentials  # type: ignore[attr-defined]
    assert provider.current().basic_auth() == (USERNAME, password)
    assert provider.reads == 1


def test_an_ssm_parameter_that_is_not_a_securestring_is_refused(aws: str) -> None:
    name = f"/currencies/test/plain-{uuid.uuid4().hex[:8]}"
    client = boto3.client("ssm", region_name=REGION)
    client.put_parameter(Name=name, Value=json.dumps({"api_key": unusual_password()}), Type="String")
    arn = client.get_parameter(Name=name)["Parameter"]["ARN"]
    with pytest.raises(CredentialsUnavailable, match="store it as a SecureString"):
        read_secret(arn)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:currencies/none-AbCdEf",
        "arn:aws:ssm:us-east-1:123456789012:parameter/currencies/none",
    ],
)
def test_a_missing_secret_is_a_clear_error_naming_the_arn(aws: str, arn: str) -> None:
    with pytest.raises(CredentialsUnavailable, match="NotFound") as raised:
        read_secret(arn)
    assert arn in str(raised.value)


def test_an_unreachable_secret_store_fails_fast(monkeypatch: pytest.MonkeyPatch, aws: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:currencies/any-AbCdEf"
    started = time.monotonic()
    with pytest.raises(CredentialsUnavailable, match="EndpointConnectionError") as raised:
        read_secret(arn)
    assert time.monotonic() - started < 10
    assert arn in str(raised.value)


def test_reading_the_secret_logs_no_value_even_at_debug(aws: str, caplog: pytest.LogCaptureFixture) -> None:
    """botocore logs response bodies at DEBUG: the read keeps them out."""
    password = unusual_password()
    arn, _ = store_secret("secretsmanager", {"username": USERNAME, "password": password})
    with caplog.at_level(logging.DEBUG):
        assert password in read_secret(arn)
        boto3.client("sts", region_name=REGION).get_caller_identity()  # botocore's DEBUG lines flow again after
    assert caplog.records, "nothing was captured: the check would prove nothing"
    assert any(r.name.startswith("botocore") and r.levelno == logging.DEBUG for r in caplog.records)
    assert password not in "\n".join(_everything(r) for r in caplog.records)


# --- rotation against a secured engine -----------------------------------------------------------


@pytest.mark.parametrize("store", ["secretsmanager", "ssm"])
def test_after_a_rotation_the_next_request_succeeds_after_one_refresh(
    aws: str, elasticsearch_url: str, store: str
) -> None:
    old, new = unusual_password(), unusual_password()
    arn, rotate = store_secret(store, {"username": USERNAME, "password": old})
    proxy = AuthProxy(elasticsearch_url, old)
    try:
        engine = connect(SearchSettings(auth="basic", secret_arn=arn, url=proxy.url))
        provider = engine._credentials  # type: ignore[attr-defined]
        run = uuid.uuid4().hex[:8]
        sink = SearchSink(engine, f"secrets-{run}-events", f"secrets-{run}-rates")

        def write(doc_id: str) -> int:
            # An index no template matches (the events mapping is strict); the templates are still set up first.
            (result,) = sink.write([Action("index", f"secrets-{run}-scratch", doc_id, {"n": doc_id})])
            return result.status

        assert write("1") in (200, 201)
        assert provider.reads == 1
        rotate({"username": USERNAME, "password": new})
        proxy.password = new
        refused_before = proxy.refused
        hits = engine.search(f"secrets-{run}-events", {"query": {"match_all": {}}}, 10)  # an API read
        assert "hits" in hits
        assert (provider.reads, proxy.refused - refused_before) == (2, 1)
        assert write("2") in (200, 201)  # a consumer bulk write, with the cached new credentials
        assert (provider.reads, proxy.refused - refused_before) == (2, 1)

        proxy.password = unusual_password()  # the secret is now wrong and stays wrong
        with pytest.raises(CredentialsRefused, match=arn):
            engine.search(f"secrets-{run}-events", {"query": {"match_all": {}}}, 10)
        (result,) = sink.write([Action("index", f"secrets-{run}-scratch", "3", {"n": "3"})])
        assert result.status == 503  # retryable: the message goes back to the queue, not lost
        assert provider.reads <= 4  # one re-read per refusal at most, never a loop
    finally:
        proxy.stop()


# --- the known secret appears nowhere ------------------------------------------------------------


def _everything(record: logging.LogRecord) -> str:
    """All a log record carries: message, every extra field, and its formatted traceback."""
    text = [record.getMessage(), repr({key: value for key, value in vars(record).items() if key != "exc_info"})]
    if record.exc_info:
        text.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(text)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(_everything(record))


@pytest.fixture
def every_log() -> Iterator[Capture]:
    """Every logger at DEBUG (the `chalicelib` ones do not propagate, so they get the handler too)."""
    capture = Capture()
    loggers = [logging.getLogger(), logging.getLogger("chalicelib")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
    yield capture
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(capture)
        logger.setLevel(level)


@pytest.fixture
def restored_process() -> Iterator[None]:
    """The pipeline rewrites os.environ, clients and `app`: give them back to the session's pipeline."""
    environ, app_module = dict(os.environ), sys.modules.get("app")
    yield
    os.environ.clear()
    os.environ.update(environ)
    if app_module is not None:
        sys.modules["app"] = app_module
    for client in vars(clients).values():
        if hasattr(client, "cache_clear"):
            client.cache_clear()


@contextmanager
def operator_botocore_quiet() -> Iterator[None]:
    """The test plays the operator storing the secret: botocore's DEBUG lines of that request hold the value."""
    logger = logging.getLogger("botocore")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(level)


class Exercise:
    """Drives a running pipeline through its API and queue, keeping every HTTP response it got."""

    def __init__(self, pipeline: LocalPipeline, proxy: AuthProxy) -> None:
        self.pipeline = pipeline
        self.proxy = proxy
        self.responses: list[str] = []
        self.letters: list[dict[str, Any]] = []
        self.symbols = ["QXK", "QYL", "QZM"]

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = requests.request(method, f"{self.pipeline.api_url}{path}", timeout=30, **kwargs)
        self.responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        return response

    def changes(self, symbol: str) -> int:
        response = self.call("GET", f"/currency/{symbol}/history")
        return len(response.json()["changes"]) if response.status_code == 200 else -1

    @staticmethod
    def wait_for(condition: Any, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.5)

    def writes_and_reads(self) -> None:
        first, second, third = self.symbols
        for symbol in self.symbols:
            assert self.call("POST", "/currency", json={"symbol": symbol, "rate": "1.25"}).status_code in (200, 201)
        assert self.call("PUT", f"/currency/{first}", json={"rate": "1.5"}).status_code == 200
        assert self.call("DELETE", f"/currency/{third}").status_code == 200
        self.wait_for(lambda: self.changes(first) == 2, "the writes to be indexed")
        assert self.call("GET", "/currency").status_code == 200
        assert self.call("GET", f"/currency/{second}", params={"at": "2100-01-01T00:00:00Z"}).status_code == 200

    def rotation(self, rotate: Any, new: str) -> None:
        first, second, _ = self.symbols
        with operator_botocore_quiet():
            rotate({"username": USERNAME, "password": new})
        self.proxy.password = new
        assert self.call("GET", f"/currency/{first}/history").status_code == 200  # one refusal, one re-read
        assert self.call("PUT", f"/currency/{second}", json={"rate": "2.5"}).status_code == 200
        self.wait_for(lambda: self.changes(second) == 2, "a write indexed with the rotated credentials")

    def refusal(self) -> requests.Response:
        new, self.proxy.password = self.proxy.password, unusual_password()  # wrong even after a re-read
        refused = self.call("GET", f"/currency/{self.symbols[0]}/history")
        self.proxy.password = new
        return refused

    def poison(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        resources = self.pipeline.resources
        assert resources is not None
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody='{"poison": ')

        def dead_lettered() -> bool:
            answer = sqs.receive_message(QueueUrl=resources.dlq_url, WaitTimeSeconds=1, MessageAttributeNames=["All"])
            self.letters.extend(answer.get("Messages", []))
            return any("poison" in json.dumps(letter) for letter in self.letters)

        self.wait_for(dead_lettered, "the poison message in the dead-letter queue")

    def outage(self) -> requests.Response:
        self.proxy.stop()
        down = self.call("GET", f"/currency/{self.symbols[0]}/history")
        self.call("PUT", f"/currency/{self.symbols[0]}", json={"rate": "3"})  # the consumer fails and logs why
        time.sleep(3)
        return down


def test_a_known_secret_appears_in_no_log_and_no_response(
    moto_url: str,
    elasticsearch_url: str,
    every_log: Capture,
    restored_process: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Writes, reads, a rotation, a persistent refusal, a poison message and a 503, on Elasticsearch.

    The OpenSearch variant would add nothing: everything above the client is the same code
    (chalicelib.sinks.credentials), and opensearch-py takes the password the same way.
    """
    old, new = unusual_password(), unusual_password()
    forms = {old, new} | {base64.b64encode(f"{USERNAME}:{p}".encode()).decode() for p in (old, new)}
    os.environ.update({**CREDENTIALS, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": moto_url})
    with operator_botocore_quiet():
        arn, rotate = store_secret("secretsmanager", {"username": USERNAME, "password": old})
    os.environ.update({"CURRENCIES_SEARCH_AUTH": "basic", "CURRENCIES_SEARCH_SECRET_ARN": arn})
    proxy = AuthProxy(elasticsearch_url, old)
    options = Options(
        api_port=free_port(),
        moto_url=moto_url,
        metrics_port=free_port(),
        engine="elasticsearch",
        search_url=proxy.url,
        prometheus=False,
    )
    pipeline = LocalPipeline(options)
    exercise = Exercise(pipeline, proxy)
    try:
        pipeline.start()
        provider = clients.search_engine()._credentials  # type: ignore[attr-defined]
        exercise.writes_and_reads()
        assert provider.reads == 1
        exercise.rotation(rotate, new)
        assert provider.reads == 2
        refused = exercise.refusal()
        assert refused.status_code == 503
        exercise.poison()
        down = exercise.outage()
        assert down.status_code == 503
    finally:
        pipeline.stop()
        proxy.stop()

    for body in (refused.text, down.text):
        assert "retry later" in body
        for detail in ("127.0.0.1", urlsplit(proxy.url).netloc, "arn:", "Elasticsearch"):
            assert detail not in body, (detail, body)
    out, err = capfd.readouterr()
    corpus = "\n".join([*every_log.lines, *exercise.responses, json.dumps(exercise.letters), out, err])
    # The capture saw what it must have seen, so finding no secret in it means something.
    assert "reading them again" in corpus
    assert "search engine unavailable" in corpus
    assert arn in corpus  # the refusal's detail went to the log
    assert "poison" in corpus
    leaked = sorted(form for form in forms if form in corpus)
    assert not leaked, "the secret (or its Basic auth encoding) was found in the logs or responses"
