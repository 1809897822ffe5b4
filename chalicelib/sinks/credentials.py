"""Search-engine credentials: read from Secrets Manager or SSM once per container, re-read when refused.

Credentials never sit in `config.json` or the environment: the stage names where they
are (`CURRENCIES_SEARCH_SECRET_ARN`), and the first request that needs them reads them.
When the engine refuses them (401/403, e.g. after a rotation), they are read once more
and the request is retried once; refused again, the request fails with a clear error.

Values are wrapped in `Secret`, whose repr and str are `***`, so neither a log line,
an exception message nor a debugger's view of the settings can show them.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chalicelib.config import SECRET_ARN
from chalicelib.sinks.base import EngineUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
SecretReader = Callable[[str], str]
"""ARN -> the secret's text (a JSON object)."""

AUTH_FAILURES = (401, 403)
READ_TIMEOUTS = {"connect_timeout": 2, "read_timeout": 3, "retries": {"max_attempts": 2, "mode": "standard"}}
"""A cold start waits at most a few seconds for a secret; a slower answer is a failure to report."""
MIN_REFRESH_INTERVAL_S = 10.0
"""Credentials refused again soon after a re-read are not re-read yet: one read per refusal, not per retry."""


class Secret:
    """A credential value that shows as `***` wherever it is printed, logged or formatted."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that needs it: the request's Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled (it would leave the process in clear)")


@dataclass(frozen=True)
class SearchCredentials:
    """Basic auth (username, password) or an Elasticsearch API key; values show as `***`."""

    username: str | None = field(default=None, repr=False)
    password: Secret | None = field(default=None, repr=False)
    api_key: Secret | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        kind = "api_key" if self.api_key is not None else "basic"
        return f"SearchCredentials({kind}, ***)"

    __str__ = __repr__

    def basic_auth(self) -> tuple[str, str]:
        if self.username is None or self.password is None:
            raise TypeError("these credentials are an API key, not a username and password")
        return self.username, self.password.reveal()


class CredentialsUnavailable(EngineUnavailable):
    """The credentials could not be read or are malformed; the message names the ARN, never a value."""


class CredentialsRefused(EngineUnavailable):
    """The engine refused the credentials, also after they were read again."""


def parse_credentials(text: str, auth: str, arn: str) -> SearchCredentials:
    """The secret's JSON: {"username", "password"} for basic auth, {"api_key"} for api_key."""
    try:
        value = json.loads(text)
    except ValueError:
        raise CredentialsUnavailable(f"the secret {arn} is not JSON; store {_shape(auth)}") from None
    if not isinstance(value, dict):
        raise CredentialsUnavailable(f"the secret {arn} is not a JSON object; store {_shape(auth)}")
    needed = ("username", "password") if auth == "basic" else ("api_key",)
    missing = [key for key in needed if not isinstance(value.get(key), str) or not value[key]]
    if missing:
        raise CredentialsUnavailable(
            f"the secret {arn} has no non-empty string {', '.join(missing)}; store {_shape(auth)}"
        )
    if auth == "basic":
        return SearchCredentials(username=value["username"], password=Secret(value["password"]))
    return SearchCredentials(api_key=Secret(value["api_key"]))


def _shape(auth: str) -> str:
    return '{"username": "...", "password": "..."}' if auth == "basic" else '{"api_key": "..."}'


def read_secret(arn: str, *, session: Any = None, endpoint_url: str | None = None) -> str:
    """The text of a Secrets Manager secret or an SSM SecureString parameter, named by its ARN.

    The client is made per call (this runs once per container, or after a refusal) in the
    ARN's region; boto3 honours AWS_ENDPOINT_URL (moto locally). Errors name the ARN and
    AWS's error code, never the value.
    """
    import boto3  # noqa: PLC0415 - only containers that use credentials pay for boto3's import
    from botocore.config import Config  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    match = SECRET_ARN.fullmatch(arn)
    if match is None:
        raise CredentialsUnavailable(
            "CURRENCIES_SEARCH_SECRET_ARN is not a Secrets Manager secret or SSM parameter ARN"
        )
    service, region = match["service"], match["region"]
    client = (session or boto3.session.Session()).client(
        service, region_name=region, endpoint_url=endpoint_url, config=Config(**READ_TIMEOUTS)
    )
    try:
        with _botocore_quiet():
            if service == "secretsmanager":
                response = client.get_secret_value(SecretId=arn)
            else:
                parameter = client.get_parameter(Name=arn, WithDecryption=True)["Parameter"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        raise CredentialsUnavailable(f"cannot read the search credentials from {arn}: {code}") from None
    except BotoCoreError as error:  # endpoint unreachable, timed out, no AWS credentials
        raise CredentialsUnavailable(f"cannot read the search credentials from {arn}: {type(error).__name__}") from None
    if service == "secretsmanager":
        if "SecretString" not in response:
            raise CredentialsUnavailable(f"the secret {arn} holds binary data; store the JSON as a string")
        return response["SecretString"]
    if parameter.get("Type") != "SecureString":
        raise CredentialsUnavailable(f"the parameter {arn} is a {parameter.get('Type')}; store it as a SecureString")
    return parameter["Value"]


_QUIET_LOGGERS = ("botocore", "botocore.parsers", "botocore.endpoint")
_quiet_lock = threading.Lock()


@contextmanager
def _botocore_quiet() -> Iterator[None]:
    """botocore logs whole response bodies at DEBUG: while a secret is read, it logs nothing below INFO.

    Levels are process-wide, so other threads' botocore DEBUG lines pause too, for the
    few milliseconds of a read done once per container.
    """
    with _quiet_lock:
        loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(max(logger.level, logging.INFO))
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


class CredentialsProvider:
    """One container's credentials: read on first use, kept, read again when the engine refuses them."""

    def __init__(
        self,
        arn: str,
        auth: str,
        reader: SecretReader = read_secret,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_refresh_interval_s: float = MIN_REFRESH_INTERVAL_S,
    ) -> None:
        self.arn = arn
        self._auth = auth
        self._reader = reader
        self._clock = clock
        self._min_refresh_interval_s = min_refresh_interval_s
        self._lock = threading.Lock()
        self._current: SearchCredentials | None = None
        self._refreshed_at: float | None = None
        self.reads = 0
        """How many times the secret was read (tests and the refresh log line use it)."""

    def __repr__(self) -> str:
        return f"CredentialsProvider({self.arn})"

    def current(self) -> SearchCredentials:
        """The cached credentials, read first if this container has none yet."""
        with self._lock:
            if self._current is None:
                self._current = self._read()
            return self._current

    def refresh(self, refused: SearchCredentials | None) -> SearchCredentials:
        """Credentials to retry with after the engine refused `refused`.

        Another thread may have re-read them already (then those are returned); a re-read is
        done at most once per MIN_REFRESH_INTERVAL_S, so a secret that stays wrong is not
        read again by every retry.
        """
        with self._lock:
            if self._current is not None and self._current is not refused:
                return self._current
            now = self._clock()
            recent = self._refreshed_at is not None and now - self._refreshed_at < self._min_refresh_interval_s
            if self._current is None or not recent:
                self._refreshed_at = now
                self._current = self._read()
            return self._current

    def _read(self) -> SearchCredentials:
        self.reads += 1
        return parse_credentials(self._reader(self.arn), self._auth, self.arn)


def with_refresh(
    provider: CredentialsProvider | None,
    attempt: Callable[[SearchCredentials | None], T],
    refused_status: Callable[[Exception], int | None],
    engine_title: str,
) -> T:
    """Run `attempt` with the current credentials; if refused (401/403), once more with re-read ones.

    `refused_status` tells an engine client's auth error (its status) from any other exception.
    """
    credentials = provider.current() if provider is not None else None
    try:
        return attempt(credentials)
    except Exception as error:
        status = refused_status(error)
        if provider is None or status not in AUTH_FAILURES:
            raise
    log.warning(
        "the search engine refused the credentials; reading them again",
        extra={"engine": engine_title, "status": status, "secret_arn": provider.arn},
    )
    fresh = provider.refresh(credentials)
    try:
        return attempt(fresh)
    except Exception as error:
        again = refused_status(error)
        if again not in AUTH_FAILURES:
            raise
    raise CredentialsRefused(
        f"{engine_title} refused the credentials from {provider.arn} ({again}), also after reading them again: "
        "check the secret's value and the user's privileges"
    )
