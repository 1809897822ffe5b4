"""Settings read from the environment, the only way a Lambda (or the local runtime) is configured.

Chalice sets a stage's `environment_variables` before it imports `app.py`, so the
event-source decorators can read their ARNs and names from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

ConsumerTrigger = Literal["sqs", "sns"]
Engine = Literal["elasticsearch", "opensearch"]
Auth = Literal["none", "basic", "api_key", "sigv4"]


class ConfigError(RuntimeError):
    """A required setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class SearchSettings:
    """Which engine, where, and how to authenticate (secrets come from the stage's environment)."""

    engine: Engine = "elasticsearch"
    url: str = "http://127.0.0.1:9200"
    auth: Auth = "none"
    username: str | None = None
    password: str | None = None
    api_key: str | None = None
    region: str | None = None
    sigv4_service: str = "es"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SearchSettings:
        engine = env.get("CURRENCIES_SEARCH_ENGINE", "elasticsearch")
        if engine not in ("elasticsearch", "opensearch"):
            raise ConfigError(f"CURRENCIES_SEARCH_ENGINE must be 'elasticsearch' or 'opensearch', got {engine!r}")
        auth = env.get("CURRENCIES_SEARCH_AUTH", "none")
        if auth not in ("none", "basic", "api_key", "sigv4"):
            raise ConfigError(f"CURRENCIES_SEARCH_AUTH must be none, basic, api_key or sigv4, got {auth!r}")
        if auth == "api_key" and engine != "elasticsearch":
            raise ConfigError("CURRENCIES_SEARCH_AUTH=api_key works with Elasticsearch only")
        if auth == "sigv4" and engine != "opensearch":
            raise ConfigError("CURRENCIES_SEARCH_AUTH=sigv4 works with OpenSearch (Amazon OpenSearch Service) only")
        settings = cls(
            engine=engine,  # type: ignore[arg-type]
            url=env.get("CURRENCIES_SEARCH_URL", cls.url),
            auth=auth,  # type: ignore[arg-type]
            username=env.get("CURRENCIES_SEARCH_USERNAME"),
            password=env.get("CURRENCIES_SEARCH_PASSWORD"),
            api_key=env.get("CURRENCIES_SEARCH_API_KEY"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            sigv4_service=env.get("CURRENCIES_SEARCH_SIGV4_SERVICE", "es"),
        )
        missing = {
            "basic": [
                ("CURRENCIES_SEARCH_USERNAME", settings.username),
                ("CURRENCIES_SEARCH_PASSWORD", settings.password),
            ],
            "api_key": [("CURRENCIES_SEARCH_API_KEY", settings.api_key)],
            "sigv4": [("AWS_REGION", settings.region)],
        }.get(auth, [])
        for name, value in missing:
            if not value:
                raise ConfigError(f"CURRENCIES_SEARCH_AUTH={auth} needs {name}")
        if settings.sigv4_service not in ("es", "aoss"):
            raise ConfigError("CURRENCIES_SEARCH_SIGV4_SERVICE must be 'es' (managed domains) or 'aoss' (serverless)")
        return settings


@dataclass(frozen=True)
class Settings:
    table_name: str
    stream_arn: str
    topic_arn: str
    topic_name: str
    queue_name: str
    consumer_trigger: ConsumerTrigger
    batch_size: int
    search: SearchSettings
    events_index: str
    rates_index: str
    dlq_url: str | None
    max_receives: int
    partial_batch_response: bool
    pushgateway_url: str | None
    metrics_idle_after_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        trigger = env.get("CURRENCIES_CONSUMER_TRIGGER", "sqs")
        if trigger not in ("sqs", "sns"):
            raise ConfigError(f"CURRENCIES_CONSUMER_TRIGGER must be 'sqs' or 'sns', got {trigger!r}")
        topic_arn = env.get("CURRENCIES_TOPIC_ARN", "")
        return cls(
            table_name=env.get("CURRENCIES_TABLE", "currency"),
            stream_arn=env.get("CURRENCIES_STREAM_ARN", ""),
            topic_arn=topic_arn,
            topic_name=env.get("CURRENCIES_TOPIC", topic_arn.rpartition(":")[2] or "currency-topic"),
            queue_name=env.get("CURRENCIES_QUEUE", "currency-queue"),
            consumer_trigger=trigger,  # type: ignore[arg-type]
            batch_size=_positive_int(env, "CURRENCIES_BATCH_SIZE", "10", maximum=10_000),
            search=SearchSettings.from_env(env),
            events_index=env.get("CURRENCIES_EVENTS_INDEX", "currency-events"),
            rates_index=env.get("CURRENCIES_RATES_INDEX", "currency-rates"),
            dlq_url=env.get("CURRENCIES_DLQ_URL") or None,
            max_receives=_positive_int(env, "CURRENCIES_MAX_RECEIVES", "5"),
            partial_batch_response=_flag(env, "CURRENCIES_PARTIAL_BATCH_RESPONSE"),
            pushgateway_url=env.get("CURRENCIES_PUSHGATEWAY_URL") or None,
            metrics_idle_after_s=_positive_int(env, "CURRENCIES_METRICS_IDLE_AFTER_S", "900", maximum=86_400),
        )

    def require(self, name: str) -> str:
        """The value of a setting a handler cannot work without, or a clear error."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"CURRENCIES_{name.upper()} is not set; set it in .chalice/config.json")
        return value


def _positive_int(env: Mapping[str, str], name: str, default: str, maximum: int = 1000) -> int:
    text = env.get(name, default)
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ConfigError(f"{name} must be an integer from 1 to {maximum}, got {text!r}")
    return int(text)


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "false").lower()
    if text not in ("true", "false"):
        raise ConfigError(f"{name} must be 'true' or 'false', got {text!r}")
    return text == "true"
