"""Settings from the environment: defaults, engine and auth choices, and clear errors."""

from __future__ import annotations

import pytest

from chalicelib.config import ConfigError, SearchSettings, Settings
from chalicelib.sinks.opensearch import OpenSearchEngine


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.consumer_trigger == "sqs"
    assert settings.batch_size == 10
    assert settings.batch_window_s == 0
    assert settings.max_receives == 5
    assert settings.search == SearchSettings()
    assert settings.dlq_url is None


@pytest.mark.parametrize(
    ("env", "mentions"),
    [
        ({"CURRENCIES_CONSUMER_TRIGGER": "kinesis"}, "CURRENCIES_CONSUMER_TRIGGER"),
        ({"CURRENCIES_BATCH_SIZE": "0"}, "CURRENCIES_BATCH_SIZE"),
        ({"CURRENCIES_BATCH_SIZE": "10001"}, "CURRENCIES_BATCH_SIZE"),
        ({"CURRENCIES_BATCH_SIZE": "11"}, "CURRENCIES_BATCH_WINDOW_S"),
        ({"CURRENCIES_BATCH_WINDOW_S": "301"}, "CURRENCIES_BATCH_WINDOW_S"),
        ({"CURRENCIES_MAX_RECEIVES": "-1"}, "CURRENCIES_MAX_RECEIVES"),
        ({"CURRENCIES_SEARCH_ENGINE": "solr"}, "CURRENCIES_SEARCH_ENGINE"),
        ({"CURRENCIES_SEARCH_AUTH": "kerberos"}, "CURRENCIES_SEARCH_AUTH"),
        ({"CURRENCIES_SEARCH_AUTH": "basic"}, "CURRENCIES_SEARCH_SECRET_ARN"),
        ({"CURRENCIES_SEARCH_AUTH": "api_key"}, "CURRENCIES_SEARCH_SECRET_ARN"),
        ({"CURRENCIES_SEARCH_AUTH": "api_key", "CURRENCIES_SEARCH_ENGINE": "opensearch"}, "Elasticsearch only"),
        ({"CURRENCIES_SEARCH_AUTH": "sigv4"}, "OpenSearch"),
        ({"CURRENCIES_SEARCH_AUTH": "sigv4", "CURRENCIES_SEARCH_ENGINE": "opensearch"}, "AWS_REGION"),
        (
            {"CURRENCIES_SEARCH_AUTH": "sigv4", "CURRENCIES_SEARCH_ENGINE": "opensearch", "AWS_REGION": "eu-west-1",
             "CURRENCIES_SEARCH_SIGV4_SERVICE": "s3"},
            "CURRENCIES_SEARCH_SIGV4_SERVICE",
        ),
    ],
)  # fmt: skip
def test_bad_settings_name_the_variable(env: dict[str, str], mentions: str) -> None:
    with pytest.raises(ConfigError, match=mentions):
        Settings.from_env(env)


def test_required_setting_says_where_to_set_it() -> None:
    with pytest.raises(ConfigError, match=r"CURRENCIES_STREAM_ARN .*config\.json"):
        Settings.from_env({}).require("stream_arn")


def test_sigv4_signs_requests_for_amazon_opensearch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built offline from static credentials; the signer is attached to the transport's connections."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    search = SearchSettings.from_env(
        {"CURRENCIES_SEARCH_ENGINE": "opensearch", "CURRENCIES_SEARCH_AUTH": "sigv4", "AWS_REGION": "eu-west-1",
         "CURRENCIES_SEARCH_URL": "https://search-domain.eu-west-1.es.amazonaws.com"}
    )  # fmt: skip
    engine = OpenSearchEngine.connect(search)
    (connection,) = engine._client.transport.connection_pool.connections
    headers = connection.http_auth("GET", f"{search.url}/_search", None)
    assert "Credential=AKIDEXAMPLE/" in headers["Authorization"]
    assert "/eu-west-1/es/aws4_request" in headers["Authorization"]
