"""Settings read from the environment, the only way a Lambda (or the local runtime) is configured.

Chalice sets a stage's `environment_variables` before it imports `app.py`, so the
event-source decorators can read their ARNs and names from here.
"""

from __future__ import annotations

import os
import re
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
    """Which engine, where, and how to authenticate.

    Credentials are not settings: `secret_arn` names the Secrets Manager secret or SSM
    SecureString holding them (chalicelib.sinks.credentials reads it on first use).
    """

    engine: Engine = "elasticsearch"
    url: str = "http://127.0.0.1:9200"
    auth: Auth = "none"
    secret_arn: str | None = None
    region: str | None = None
    sigv4_service: str = "es"
    verify_certs: bool = True
    ca_certs: str | None = None

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
        verify_certs, ca_certs = _search_tls(env)
        settings = cls(
            engine=engine,  # type: ignore[arg-type]
            url=env.get("CURRENCIES_SEARCH_URL", cls.url),
            auth=auth,  # type: ignore[arg-type]
            secret_arn=_search_secret_arn(env, auth),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            sigv4_service=env.get("CURRENCIES_SEARCH_SIGV4_SERVICE", "es"),
            verify_certs=verify_certs,
            ca_certs=ca_certs,
        )
        if auth == "sigv4" and not settings.region:
            raise ConfigError("CURRENCIES_SEARCH_AUTH=sigv4 needs AWS_REGION")
        if settings.sigv4_service not in ("es", "aoss"):
            raise ConfigError("CURRENCIES_SEARCH_SIGV4_SERVICE must be 'es' (managed domains) or 'aoss' (serverless)")
        return settings


def _search_secret_arn(env: Mapping[str, str], auth: str) -> str | None:
    """Where the credentials are: required for basic and api_key, refused otherwise; never the credentials."""
    for retired in _RETIRED_CREDENTIAL_VARIABLES:
        if retired in env:  # named, never echoed: its value is a credential
            raise ConfigError(
                f"{retired} is no longer read: store the search credentials in Secrets Manager or an SSM "
                "SecureString parameter and set CURRENCIES_SEARCH_SECRET_ARN to its ARN"
            )
    secret_arn = env.get("CURRENCIES_SEARCH_SECRET_ARN") or None
    if auth in ("basic", "api_key"):
        if secret_arn is None:
            raise ConfigError(f"CURRENCIES_SEARCH_AUTH={auth} needs CURRENCIES_SEARCH_SECRET_ARN")
        if not SECRET_ARN.fullmatch(secret_arn):
            raise ConfigError(
                "CURRENCIES_SEARCH_SECRET_ARN must be a Secrets Manager secret ARN "
                "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME) or an SSM parameter ARN "
                "(arn:aws:ssm:REGION:ACCOUNT:parameter/PATH)"  # not echoed: it may be a misplaced credential
            )
    elif secret_arn is not None:
        raise ConfigError(
            f"CURRENCIES_SEARCH_SECRET_ARN is set but CURRENCIES_SEARCH_AUTH={auth} reads no credentials; "
            "use basic or api_key, or remove it"
        )
    return secret_arn


def _search_tls(env: Mapping[str, str]) -> tuple[bool, str | None]:
    """Certificates are verified unless CURRENCIES_SEARCH_VERIFY_CERTS is explicitly false."""
    verify_certs = _flag(env, "CURRENCIES_SEARCH_VERIFY_CERTS", default="true")
    ca_certs = env.get("CURRENCIES_SEARCH_CA_CERTS") or None
    if ca_certs is not None and not verify_certs:
        raise ConfigError("CURRENCIES_SEARCH_CA_CERTS is set but CURRENCIES_SEARCH_VERIFY_CERTS=false ignores it")
    return verify_certs, ca_certs


_RETIRED_CREDENTIAL_VARIABLES = (
    "CURRENCIES_SEARCH_USERNAME",
    "CURRENCIES_SEARCH_PASSWORD",
    "CURRENCIES_SEARCH_API_KEY",
)
SECRET_ARN = re.compile(
    r"arn:aws[a-z-]*:(?P<service>secretsmanager|ssm):(?P<region>[a-z0-9-]+):[0-9]{12}:"
    r"(?:secret:[A-Za-z0-9/_+=.@-]+|parameter/[A-Za-z0-9/_.-]+)"
)
"""A Secrets Manager secret's or an SSM parameter's ARN (the only places search credentials may live)."""


@dataclass(frozen=True)
class Settings:
    table_name: str
    stream_arn: str
    topic_arn: str
    topic_name: str
    queue_name: str
    consumer_trigger: ConsumerTrigger
    batch_size: int
    batch_window_s: int
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
        batch_size = _bounded_int(env, "CURRENCIES_BATCH_SIZE", "10", maximum=10_000)
        batch_window_s = _bounded_int(env, "CURRENCIES_BATCH_WINDOW_S", "0", minimum=0, maximum=300)
        if trigger == "sqs" and batch_size > 10 and batch_window_s == 0:
            # Lambda refuses an SQS mapping like that; say so before a deploy half-succeeds.
            raise ConfigError("CURRENCIES_BATCH_SIZE above 10 needs CURRENCIES_BATCH_WINDOW_S of at least 1")
        return cls(
            table_name=env.get("CURRENCIES_TABLE", "currency"),
            stream_arn=env.get("CURRENCIES_STREAM_ARN", ""),
            topic_arn=topic_arn,
            topic_name=env.get("CURRENCIES_TOPIC", topic_arn.rpartition(":")[2] or "currency-topic"),
            queue_name=env.get("CURRENCIES_QUEUE", "currency-queue"),
            consumer_trigger=trigger,  # type: ignore[arg-type]
            batch_size=batch_size,
            batch_window_s=batch_window_s,
            search=SearchSettings.from_env(env),
            events_index=env.get("CURRENCIES_EVENTS_INDEX", "currency-events"),
            rates_index=env.get("CURRENCIES_RATES_INDEX", "currency-rates"),
            dlq_url=env.get("CURRENCIES_DLQ_URL") or None,
            max_receives=_bounded_int(env, "CURRENCIES_MAX_RECEIVES", "5"),
            partial_batch_response=_flag(env, "CURRENCIES_PARTIAL_BATCH_RESPONSE"),
            pushgateway_url=env.get("CURRENCIES_PUSHGATEWAY_URL") or None,
            metrics_idle_after_s=_bounded_int(env, "CURRENCIES_METRICS_IDLE_AFTER_S", "900", maximum=86_400),
        )

    def require(self, name: str) -> str:
        """The value of a setting a handler cannot work without, or a clear error."""
        value = getattr(self, name)
        if not value:
            raise ConfigError(f"CURRENCIES_{name.upper()} is not set; set it in .chalice/config.json")
        return value


def _bounded_int(env: Mapping[str, str], name: str, default: str, minimum: int = 1, maximum: int = 1000) -> int:
    text = env.get(name, default)
    if not text.isdigit() or not minimum <= int(text) <= maximum:
        raise ConfigError(f"{name} must be an integer from {minimum} to {maximum}, got {text!r}")
    return int(text)


def _flag(env: Mapping[str, str], name: str, default: str = "false") -> bool:
    """'true' or 'false' (any case); anything else is an error, so a typo never switches a setting silently."""
    text = env.get(name, default).lower()
    if text not in ("true", "false"):
        raise ConfigError(f"{name} must be 'true' or 'false', got {text!r}")
    return text == "true"
