"""Search credentials: read once, re-read once when refused, never shown; TLS on by default; a 503 shows no host."""

from __future__ import annotations

import logging
import pickle
import threading
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import certifi
import pytest
from chalice.app import Request
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import AuthenticationException, AuthorizationException, NotFoundError
from opensearchpy import AuthenticationException as OpenSearchAuthenticationException

from chalicelib.api import handlers
from chalicelib.config import ConfigError, SearchSettings, Settings
from chalicelib.sinks.base import EngineUnavailable
from chalicelib.sinks.credentials import (
    CredentialsProvider,
    CredentialsRefused,
    CredentialsUnavailable,
    SearchCredentials,
    Secret,
    parse_credentials,
    read_secret,
    with_refresh,
)
from chalicelib.sinks.elasticsearch import KEPT_CLIENTS, ElasticsearchEngine
from chalicelib.sinks.opensearch import OpenSearchEngine
from chalicelib.sinks.sink import connect

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:currencies/search-AbCdEf"
SSM_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/currencies/prod/search"
PASSWORD = "pw-Zq7!unusual-secret"
NEW_PASSWORD = "pw-Kx3?rotated-secret"


def basic(password: str, username: str = "writer") -> str:
    return '{"username": "%s", "password": "%s"}' % (username, password)  # noqa: UP031 - JSON braces


class Vault:
    """A secret store in memory: its current value, and how often it was read."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.reads: list[str] = []

    def __call__(self, arn: str) -> str:
        self.reads.append(arn)
        return self.text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"refused {status}")
        self.status = status


def status_of(error: Exception) -> int | None:
    return error.status if isinstance(error, Refused) else None


class Cluster:
    """An engine that accepts one password: what a secured cluster does with the requests' credentials."""

    def __init__(self, password: str, status: int = 401) -> None:
        self.password = password
        self.status = status
        self.attempts: list[str | None] = []

    def request(self, credentials: SearchCredentials | None) -> str:
        given = credentials.basic_auth()[1] if credentials is not None else None
        self.attempts.append(given)
        if given != self.password:
            raise Refused(self.status)
        return "answer"


# --- never shown --------------------------------------------------------------------------------


def test_a_secret_shows_as_stars_everywhere() -> None:
    secret = Secret(PASSWORD)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % secret, repr([secret]), repr({"k": secret})]  # noqa: UP031
    assert all(PASSWORD not in text for text in shown), shown
    assert set(shown[:5]) == {"***"}
    assert secret.reveal() == PASSWORD
    assert secret == Secret(PASSWORD)
    assert secret != Secret(NEW_PASSWORD)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


@pytest.mark.parametrize(
    "credentials",
    [
        SearchCredentials(username="writer", password=Secret(PASSWORD)),
        SearchCredentials(api_key=Secret(PASSWORD)),
    ],
)
def test_credentials_hide_their_values_in_repr_and_str(credentials: SearchCredentials) -> None:
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert PASSWORD not in text
        assert "***" in text


def test_settings_carry_where_the_secret_is_never_the_secret() -> None:
    env = {
        "CURRENCIES_SEARCH_AUTH": "basic",
        "CURRENCIES_SEARCH_SECRET_ARN": ARN,
        "CURRENCIES_SEARCH_URL": "https://s:443",
    }
    settings = Settings.from_env(env)
    assert settings.search.secret_arn == ARN
    assert ARN in repr(settings)  # where, for operators
    assert not {"username", "password", "api_key"} & set(vars(settings.search))
    provider = CredentialsProvider(ARN, "basic", Vault(basic(PASSWORD)))
    provider.current()
    assert PASSWORD not in repr(provider) + str(provider) + repr(vars(provider))


@pytest.mark.parametrize(
    "variable", ["CURRENCIES_SEARCH_USERNAME", "CURRENCIES_SEARCH_PASSWORD", "CURRENCIES_SEARCH_API_KEY"]
)
def test_credentials_in_the_environment_are_refused_without_echoing_them(variable: str) -> None:
    env = {"CURRENCIES_SEARCH_AUTH": "basic", "CURRENCIES_SEARCH_SECRET_ARN": ARN, variable: PASSWORD}
    with pytest.raises(ConfigError, match=variable) as raised:
        Settings.from_env(env)
    assert PASSWORD not in str(raised.value)
    assert "CURRENCIES_SEARCH_SECRET_ARN" in str(raised.value)


# --- configuration ------------------------------------------------------------------------------


AUTH, WHERE, VERIFY = "CURRENCIES_SEARCH_AUTH", "CURRENCIES_SEARCH_SECRET_ARN", "CURRENCIES_SEARCH_VERIFY_CERTS"


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({AUTH: "basic"}, f"needs {WHERE}"),
        ({AUTH: "api_key", WHERE: ""}, f"needs {WHERE}"),
        ({AUTH: "basic", WHERE: "currencies/search"}, "must be a Secrets Manager"),
        ({AUTH: "basic", WHERE: "arn:aws:s3:::bucket/key"}, "must be a Secrets Manager"),
        ({AUTH: "basic", WHERE: "arn:aws:secretsmanager:eu-west-1:123:secret:x"}, "must be a Secrets Manager"),
        ({WHERE: ARN}, f"{AUTH}=none reads no credentials"),
        ({AUTH: "sigv4", "CURRENCIES_SEARCH_ENGINE": "opensearch", "AWS_REGION": "eu-west-1", WHERE: ARN},
         f"{AUTH}=sigv4 reads no credentials"),
        ({VERIFY: "0"}, f"{VERIFY} must be 'true' or 'false'"),
        ({VERIFY: "no"}, f"{VERIFY} must be 'true' or 'false'"),
        ({VERIFY: ""}, f"{VERIFY} must be 'true' or 'false'"),
        ({VERIFY: "false", "CURRENCIES_SEARCH_CA_CERTS": "/ca.pem"}, "ignores it"),
    ],
)  # fmt: skip
def test_search_setting_errors_name_the_variable(env: dict[str, str], mentions: str) -> None:
    with pytest.raises(ConfigError, match=mentions):
        SearchSettings.from_env(env)


def test_a_malformed_secret_arn_is_not_echoed() -> None:
    """Someone may paste the password where the ARN goes."""
    env = {"CURRENCIES_SEARCH_AUTH": "basic", "CURRENCIES_SEARCH_SECRET_ARN": PASSWORD}
    with pytest.raises(ConfigError) as raised:
        SearchSettings.from_env(env)
    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize("arn", [ARN, SSM_ARN, "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/search"])
def test_secret_arns_of_both_stores_are_accepted(arn: str) -> None:
    search = SearchSettings.from_env({"CURRENCIES_SEARCH_AUTH": "api_key", "CURRENCIES_SEARCH_SECRET_ARN": arn})
    assert (search.auth, search.secret_arn) == ("api_key", arn)


def test_tls_is_verified_unless_explicitly_switched_off() -> None:
    https = {"CURRENCIES_SEARCH_URL": "https://search.internal:443"}
    assert SearchSettings.from_env(https).verify_certs is True
    assert SearchSettings.from_env({**https, "CURRENCIES_SEARCH_VERIFY_CERTS": "true"}).verify_certs is True
    assert SearchSettings.from_env({**https, "CURRENCIES_SEARCH_VERIFY_CERTS": "false"}).verify_certs is False
    with_ca = SearchSettings.from_env({**https, "CURRENCIES_SEARCH_CA_CERTS": "/etc/ca.pem"})
    assert (with_ca.verify_certs, with_ca.ca_certs) == (True, "/etc/ca.pem")


@pytest.mark.parametrize("verify", [True, False])
def test_both_clients_get_the_tls_settings(verify: bool) -> None:
    ca = certifi.where() if verify else None
    search = SearchSettings(url="https://search.internal:443", verify_certs=verify, ca_certs=ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both clients warn when verification is off, as they should
        elastic = ElasticsearchEngine.connect(search)
        opensearch = OpenSearchEngine.connect(
            SearchSettings(engine="opensearch", url=search.url, verify_certs=verify, ca_certs=ca)
        )
    (node,) = elastic._client.transport.node_pool.all()
    assert (node.config.verify_certs, node.config.ca_certs) == (verify, ca)
    (connection,) = opensearch._client.transport.connection_pool.connections
    assert connection.pool.cert_reqs == ("CERT_REQUIRED" if verify else "CERT_NONE")
    assert connection.pool.ca_certs == ca


# --- read once, cached --------------------------------------------------------------------------


def test_credentials_are_read_on_first_use_then_cached() -> None:
    vault = Vault(basic(PASSWORD))
    provider = CredentialsProvider(ARN, "basic", vault)
    assert vault.reads == []  # nothing at construction (nor at import, nor at connect())
    for _ in range(50):
        assert provider.current().basic_auth() == ("writer", PASSWORD)
    assert vault.reads == [ARN]


def test_connect_reads_nothing_until_the_first_request() -> None:
    vault = Vault(basic(PASSWORD))
    search = SearchSettings(auth="basic", secret_arn=ARN, url="http://127.0.0.1:9")
    connect(search, vault)
    connect(SearchSettings(engine="opensearch", auth="basic", secret_arn=ARN, url="http://127.0.0.1:9"), vault)
    assert vault.reads == []


def test_concurrent_first_uses_read_once() -> None:
    vault = Vault(basic(PASSWORD))
    provider = CredentialsProvider(ARN, "basic", vault)
    threads = [threading.Thread(target=provider.current) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert vault.reads == [ARN]


def test_many_requests_read_the_secret_once() -> None:
    cluster, vault = Cluster(PASSWORD), Vault(basic(PASSWORD))
    provider = CredentialsProvider(ARN, "basic", vault)
    for _ in range(20):
        assert with_refresh(provider, cluster.request, status_of, "Engine") == "answer"
    assert len(vault.reads) == 1
    assert cluster.attempts == [PASSWORD] * 20


# --- refresh on refusal ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_rereads_the_secret_once_and_retries_once(status: int) -> None:
    cluster, vault = Cluster(PASSWORD, status), Vault(basic(PASSWORD))
    provider = CredentialsProvider(ARN, "basic", vault)
    assert with_refresh(provider, cluster.request, status_of, "Engine") == "answer"
    cluster.password = NEW_PASSWORD  # rotated: the engine first, then the secret
    vault.text = basic(NEW_PASSWORD)
    cluster.attempts.clear()
    assert with_refresh(provider, cluster.request, status_of, "Engine") == "answer"
    assert cluster.attempts == [PASSWORD, NEW_PASSWORD]
    assert len(vault.reads) == 2
    assert with_refresh(provider, cluster.request, status_of, "Engine") == "answer"
    assert len(vault.reads) == 2  # the new credentials are cached in turn


def test_a_persistent_refusal_ends_in_a_clear_error_not_a_loop() -> None:
    clock = Clock()
    cluster, vault = Cluster("not what the secret holds"), Vault(basic(PASSWORD))
    provider = CredentialsProvider(ARN, "basic", vault, clock=clock, min_refresh_interval_s=10)
    with pytest.raises(CredentialsRefused) as raised:
        with_refresh(provider, cluster.request, status_of, "Elasticsearch")
    message = str(raised.value)
    assert ARN in message
    assert "Elasticsearch" in message
    assert "401" in message
    assert PASSWORD not in message
    assert len(cluster.attempts) == 2
    assert len(vault.reads) == 2
    assert isinstance(raised.value, EngineUnavailable)  # a 503 for the API, a retry for the consumer
    # Retries right after (the bulk writer's) do not read the secret again, but still try twice.
    clock.now += 1
    with pytest.raises(CredentialsRefused):
        with_refresh(provider, cluster.request, status_of, "Elasticsearch")
    assert (len(cluster.attempts), len(vault.reads)) == (4, 2)
    clock.now += 10  # later, a fixed secret would be picked up
    vault.text = basic("not what the secret holds")
    assert with_refresh(provider, cluster.request, status_of, "Elasticsearch") == "answer"
    assert len(vault.reads) == 3


def test_a_refresh_done_by_another_request_is_reused() -> None:
    vault = Vault(basic(PASSWORD))
    provider = CredentialsProvider(ARN, "basic", vault)
    stale = provider.current()
    vault.text = basic(NEW_PASSWORD)
    fresh = provider.refresh(stale)
    again = provider.refresh(stale)  # a second request refused with the same stale credentials
    assert again is fresh
    assert len(vault.reads) == 2


def test_other_errors_are_not_refreshes() -> None:
    vault = Vault(basic(PASSWORD))
    provider = CredentialsProvider(ARN, "basic", vault)

    def fails(_: SearchCredentials | None) -> str:
        raise Refused(404)

    with pytest.raises(Refused):
        with_refresh(provider, fails, status_of, "Engine")
    assert len(vault.reads) == 1


def test_without_credentials_a_refusal_is_the_clients_own_error() -> None:
    with pytest.raises(Refused):
        with_refresh(None, Cluster(PASSWORD).request, status_of, "Engine")


def test_a_failed_read_names_the_arn_and_is_not_cached() -> None:
    calls = []

    def unreachable(arn: str) -> str:
        calls.append(arn)
        raise CredentialsUnavailable(f"cannot read the search credentials from {arn}: ConnectTimeoutError")

    provider = CredentialsProvider(ARN, "basic", unreachable)
    for _ in range(2):
        with pytest.raises(CredentialsUnavailable, match=ARN):
            provider.current()
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("text", "auth", "mentions"),
    [
        (f"user:{PASSWORD}", "basic", "is not JSON"),
        (f'["{PASSWORD}"]', "basic", "is not a JSON object"),
        (f'{{"user": "writer", "password": "{PASSWORD}"}}', "basic", "username"),
        (f'{{"username": "writer", "password": 7, "note": "{PASSWORD}"}}', "basic", "password"),
        (f'{{"key": "{PASSWORD}"}}', "api_key", "api_key"),
    ],
)
def test_a_malformed_secret_is_described_not_shown(text: str, auth: str, mentions: str) -> None:
    with pytest.raises(CredentialsUnavailable, match=mentions) as raised:
        parse_credentials(text, auth, ARN)
    assert ARN in str(raised.value)
    assert PASSWORD not in str(raised.value)
    # Nor in its traceback: the JSON parser's error (which holds the text) is not chained.
    assert PASSWORD not in "".join(traceback.format_exception(raised.value))


def test_api_key_secrets_parse() -> None:
    credentials = parse_credentials(f'{{"api_key": "{PASSWORD}"}}', "api_key", ARN)
    assert credentials.api_key == Secret(PASSWORD)
    with pytest.raises(TypeError):
        credentials.basic_auth()


def test_a_value_that_is_no_arn_is_not_echoed() -> None:
    with pytest.raises(CredentialsUnavailable) as raised:
        read_secret(PASSWORD)
    assert PASSWORD not in str(raised.value)


# --- the adapters refresh: API reads and the consumer's bulk writes go through them ------------------


def _es_error(cls: type[Exception], status: int) -> Exception:
    meta = ApiResponseMeta(status, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "search.internal", 9200))
    return cls(message="security_exception", meta=meta, body={"error": {"type": "security_exception"}})  # type: ignore[call-arg]


class FakeElasticsearch:
    """The elasticsearch client's `options(basic_auth=...)` then a call, refused unless the password is current."""

    def __init__(self, password: str, refusal: type[Exception] = AuthenticationException) -> None:
        self.password = password
        self.refusal = refusal
        self.sent: list[tuple[str, str]] = []

    def options(self, **options: Any) -> FakeElasticsearch:
        auth = options.get("basic_auth") or ("", "")
        client = self

        class Bound:
            def bulk(self, operations: bytes, filter_path: str) -> dict[str, Any]:
                return client._answer("bulk", auth, {"items": [{"index": {"status": 201}}]})

            def search(self, **_: Any) -> Any:
                return client._answer("search", auth, type("R", (), {"body": {"hits": {"hits": []}}})())

            class indices:
                @staticmethod
                def exists(index: str) -> bool:
                    raise _es_error(NotFoundError, 404)

        return Bound()  # type: ignore[return-value]

    def _answer(self, call: str, auth: tuple[str, str], answer: Any) -> Any:
        self.sent.append((call, auth[1]))
        if auth[1] != self.password:
            raise _es_error(self.refusal, 401 if self.refusal is AuthenticationException else 403)
        return answer


@pytest.mark.parametrize("refusal", [AuthenticationException, AuthorizationException])
def test_elasticsearch_reads_and_bulk_writes_refresh_after_a_rotation(refusal: type[Exception]) -> None:
    vault = Vault(basic(PASSWORD))
    client = FakeElasticsearch(PASSWORD, refusal)
    engine = ElasticsearchEngine(client, CredentialsProvider(ARN, "basic", vault))  # type: ignore[arg-type]
    assert engine.send_bulk(b"{}\n", 5) == [{"index": {"status": 201}}]
    assert engine.search("ev", {}, 5) == {"hits": {"hits": []}}
    client.password = NEW_PASSWORD
    vault.text = basic(NEW_PASSWORD)
    assert engine.send_bulk(b"{}\n", 5) == [{"index": {"status": 201}}]
    assert engine.search("ev", {}, 5) == {"hits": {"hits": []}}
    assert client.sent == [
        ("bulk", PASSWORD), ("search", PASSWORD), ("bulk", PASSWORD), ("bulk", NEW_PASSWORD), ("search", NEW_PASSWORD)
    ]  # fmt: skip
    assert len(vault.reads) == 2


class CountingElasticsearch(FakeElasticsearch):
    def __init__(self, password: str) -> None:
        super().__init__(password)
        self.configured: list[dict[str, Any]] = []

    def options(self, **options: Any) -> FakeElasticsearch:
        self.configured.append(options)
        return super().options(**options)


def test_elasticsearch_configures_a_client_once_per_credentials_and_timeout() -> None:
    """`options()` builds a whole client (~250 µs): repeats reuse it, a rotation or a new timeout gets its own."""
    vault = Vault(basic(PASSWORD))
    client = CountingElasticsearch(PASSWORD)
    engine = ElasticsearchEngine(client, CredentialsProvider(ARN, "basic", vault))  # type: ignore[arg-type]
    for _ in range(3):
        engine.send_bulk(b"{}\n", 30)
    engine.search("ev", {}, 10)
    assert [(options["request_timeout"], options["basic_auth"][1]) for options in client.configured] == [
        (30, PASSWORD), (10, PASSWORD)
    ]  # fmt: skip
    client.password = NEW_PASSWORD
    vault.text = basic(NEW_PASSWORD)
    engine.send_bulk(b"{}\n", 30)  # refused with the kept client, then a new one with the new password
    assert [options["basic_auth"][1] for options in client.configured[2:]] == [NEW_PASSWORD]
    for left in range(1, 20):  # an invocation's last seconds: one-off timeouts, not all kept
        engine.send_bulk(b"{}\n", left / 10)
    assert len(engine._by_timeout) == KEPT_CLIENTS


def test_elasticsearch_persistent_refusal_is_engine_unavailable() -> None:
    vault = Vault(basic(PASSWORD))
    engine = ElasticsearchEngine(FakeElasticsearch("other"), CredentialsProvider(ARN, "basic", vault))  # type: ignore[arg-type]
    with pytest.raises(CredentialsRefused, match="Elasticsearch refused the credentials"):
        engine.search("ev", {}, 5)
    with pytest.raises(NotFoundError):  # not an auth failure: the client's error, no refresh
        engine.index_exists("ev", 5)
    assert len(vault.reads) == 2


class FakeOpenSearch:
    def __init__(self, credentials: SearchCredentials | None, cluster: Cluster) -> None:
        self._credentials = credentials
        self._cluster = cluster

    def search(self, **_: Any) -> dict[str, Any]:
        try:
            self._cluster.request(self._credentials)
        except Refused as refused:
            raise OpenSearchAuthenticationException(refused.status, "security_exception", {}) from None
        return {"hits": {"hits": []}}


def test_opensearch_rebuilds_its_client_with_fresh_credentials() -> None:
    cluster, vault = Cluster(PASSWORD), Vault(basic(PASSWORD))
    built: list[SearchCredentials | None] = []

    def build(credentials: SearchCredentials | None) -> FakeOpenSearch:
        built.append(credentials)
        return FakeOpenSearch(credentials, cluster)

    engine = OpenSearchEngine(build, CredentialsProvider(ARN, "basic", vault))  # type: ignore[arg-type]
    for _ in range(3):
        assert engine.search("ev", {}, 5) == {"hits": {"hits": []}}
    cluster.password = NEW_PASSWORD
    vault.text = basic(NEW_PASSWORD)
    assert engine.search("ev", {}, 5) == {"hits": {"hits": []}}
    assert [c.basic_auth()[1] if c else None for c in built] == [None, PASSWORD, NEW_PASSWORD]
    cluster.password = "other"
    with pytest.raises(CredentialsRefused, match="OpenSearch refused"):
        engine.search("ev", {}, 5)


# --- the API's 503 ------------------------------------------------------------------------------


@pytest.fixture
def chalicelib_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the `chalicelib` loggers (they may not propagate to pytest's handler)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("chalicelib")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


class DownReader:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def history(self, _: Any) -> dict[str, Any]:
        raise self.error

    def rate_at(self, *_: Any) -> dict[str, Any]:
        raise self.error


def _request(path: str, query: dict[str, str] | None, request_id: str | None) -> Request:
    context: dict[str, Any] = {"httpMethod": "GET", "resourcePath": path}
    if request_id:
        context["requestId"] = request_id
    multi = {key: [value] for key, value in (query or {}).items()} or None
    event = {"multiValueQueryStringParameters": multi, "headers": {}, "pathParameters": {}, "requestContext": context}
    return Request({**event, "body": None, "stageVariables": None, "isBase64Encoded": False})


@pytest.mark.parametrize(
    "error",
    [
        EngineUnavailable(
            "Elasticsearch unreachable: ConnectionError(http://10.20.30.40:9200/currency-events/_search)"
        ),
        CredentialsRefused(f"Elasticsearch refused the credentials from {ARN} (401), also after reading them again"),
        CredentialsUnavailable(f"cannot read the search credentials from {ARN}: AccessDeniedException"),
    ],
)
@pytest.mark.parametrize("route", ["history", "read_at"])
def test_the_503_body_names_no_host_and_the_log_has_the_detail(
    error: EngineUnavailable, route: str, chalicelib_log: list[logging.LogRecord]
) -> None:
    reader = DownReader(error)
    if route == "history":
        response = handlers.history(_request("/currency/{symbol}/history", None, "req-1234"), lambda: reader, "EUR")  # type: ignore[arg-type,return-value]
    else:
        request = _request("/currency/{symbol}", {"at": "2026-01-01T00:00:00Z"}, "req-1234")
        response = handlers.read(request, None, lambda: reader, "EUR")  # type: ignore[arg-type,return-value]
    assert response.status_code == 503
    body = response.body
    assert '"search_unavailable"' in body
    assert "retry later" in body
    assert "req-1234" in body
    for detail in ("10.20.30.40", "9200", "arn:", "Elasticsearch", "401", "AccessDenied"):
        assert detail not in body, (detail, body)
    (record,) = [r for r in chalicelib_log if r.getMessage() == "search engine unavailable"]
    assert record.levelno == logging.WARNING
    assert record.error == str(error)  # type: ignore[attr-defined]
    assert record.api_request_id == "req-1234"  # type: ignore[attr-defined]


def test_a_503_without_a_request_id_still_says_what_to_do() -> None:
    reader = DownReader(EngineUnavailable("OpenSearch unavailable (N/A): http://internal:9200"))
    response = handlers.history(_request("/currency/{symbol}/history", None, None), lambda: reader, "EUR")  # type: ignore[arg-type,return-value]
    assert response.status_code == 503
    assert "internal" not in response.body
    assert "the search engine cannot answer now; retry later" in response.body
