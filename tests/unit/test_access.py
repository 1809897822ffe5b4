"""Route access: the settings give the right Chalice route arguments, the packaged API definition carries
them on every write (and on reads when asked), and the local runtime's gate refuses what API Gateway would.

The API definition is built in process by `CFNSwaggerGenerator`, the generator `chalice package` uses
for the `DefinitionBody` of its `sam.json` (checked against a real `chalice package` output once; the
generator has no input besides the app object, so the two cannot differ).
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from chalice import CognitoUserPoolAuthorizer, IAMAuthorizer
from chalice.cli.factory import CLIFactory
from chalice.deploy.swagger import CFNSwaggerGenerator

from chalicelib import clients
from chalicelib.api.access import GATEWAY_ERROR_CODES, RouteAccess
from chalicelib.config import ConfigError
from currencies_local.gateway import (
    BAD_SIGNATURE,
    EXPIRED_SIGNATURE,
    FORBIDDEN,
    MISSING_TOKEN,
    UNAUTHORIZED,
    LocalGate,
    Refusal,
)
from currencies_local.pipeline import PROJECT_DIR

POOL = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEf123"
OTHER_POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_Zyx987"
AUTH_VARIABLES = ("CURRENCIES_WRITE_AUTH", "CURRENCIES_READ_AUTH", "CURRENCIES_COGNITO_USER_POOL_ARNS")
# What app.py needs to import at all (a deployed stage's ARNs), whatever the stage says about auth.
APP_BASE = {
    "CURRENCIES_STREAM_ARN": "arn:aws:dynamodb:us-east-1:123456789012:table/currency/stream/2026-01-01T00:00:00.000",
    "CURRENCIES_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:currency-topic",
}
WRITES = {"post", "put", "delete"}
PUBLIC_ALWAYS = {("/openapi.json", "get")}


# --- settings -> route arguments --------------------------------------------------------------


def test_writes_need_iam_when_nothing_is_said() -> None:
    access = RouteAccess.from_env({})
    assert isinstance(access.write["authorizer"], IAMAuthorizer)
    assert set(access.write) == {"authorizer"}
    assert access.read == {}


def test_cognito_names_its_user_pools() -> None:
    access = RouteAccess.from_env(
        {"CURRENCIES_WRITE_AUTH": "cognito", "CURRENCIES_COGNITO_USER_POOL_ARNS": f" {POOL} , {OTHER_POOL} "}
    )
    authorizer = access.write["authorizer"]
    assert isinstance(authorizer, CognitoUserPoolAuthorizer)
    assert authorizer.to_swagger()["x-amazon-apigateway-authorizer"]["providerARNs"] == [POOL, OTHER_POOL]


def test_api_key_mode_requires_a_key_and_no_authorizer() -> None:
    assert RouteAccess.from_env({"CURRENCIES_WRITE_AUTH": "api_key"}).write == {"api_key_required": True}


def test_none_mode_adds_nothing() -> None:
    access = RouteAccess.from_env({"CURRENCIES_WRITE_AUTH": "none", "CURRENCIES_READ_AUTH": "same"})
    assert access.write == {}
    assert access.read == {}


@pytest.mark.parametrize("write", ["iam", "api_key", "cognito"])
def test_protected_reads_carry_the_writes_protection(write: str) -> None:
    env = {"CURRENCIES_WRITE_AUTH": write, "CURRENCIES_READ_AUTH": "same", "CURRENCIES_COGNITO_USER_POOL_ARNS": POOL}
    access = RouteAccess.from_env(env)
    assert access.read == access.write != {}
    assert RouteAccess.from_env({**env, "CURRENCIES_READ_AUTH": "none"}).read == {}


def test_values_are_read_case_and_space_insensitively() -> None:
    assert RouteAccess.from_env({"CURRENCIES_WRITE_AUTH": " API_KEY "}).write_auth == "api_key"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CURRENCIES_WRITE_AUTH": "sigv4"}, "CURRENCIES_WRITE_AUTH"),
        ({"CURRENCIES_WRITE_AUTH": ""}, "CURRENCIES_WRITE_AUTH"),
        ({"CURRENCIES_READ_AUTH": "iam"}, "CURRENCIES_READ_AUTH"),
        ({"CURRENCIES_WRITE_AUTH": "cognito"}, "CURRENCIES_COGNITO_USER_POOL_ARNS"),
        ({"CURRENCIES_WRITE_AUTH": "cognito", "CURRENCIES_COGNITO_USER_POOL_ARNS": " , "}, "USER_POOL_ARNS"),
        (
            {"CURRENCIES_WRITE_AUTH": "cognito", "CURRENCIES_COGNITO_USER_POOL_ARNS": "us-east-1_AbCdEf123"},
            "not a Cognito user pool ARN",
        ),
    ],
)
def test_bad_settings_fail_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        RouteAccess.from_env(env)


# --- the packaged API definition ---------------------------------------------------------------


@contextmanager
def loggers_left_as_they_were(*names: str) -> Iterator[None]:
    """Undo what importing app.py does to logging (Chalice's handler, JSON formatters on others' handlers).

    Without this, a second import inside pytest reformats pytest's own capture handlers (attached to
    non-propagating loggers), and later log tests see every line twice.
    """
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    formatters = {handler: handler.formatter for logger in loggers for handler in logger.handlers}
    try:
        yield
    finally:
        for logger, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            logger.handlers[:], logger.propagate, logger.level = handlers, propagate, level
        for handler, formatter in formatters.items():
            handler.setFormatter(formatter)


def load_app(env: Mapping[str, str]) -> Any:
    """app.py imported afresh with exactly these auth settings; the process is left as it was."""
    saved = sys.modules.pop("app", None)
    try:
        with pytest.MonkeyPatch.context() as patch, loggers_left_as_they_were("currencies", "chalicelib"):
            for name in AUTH_VARIABLES:
                patch.delenv(name, raising=False)
            for name, value in {**APP_BASE, **env}.items():
                patch.setenv(name, value)
            clients.settings.cache_clear()
            return importlib.import_module("app").app
    finally:
        sys.modules.pop("app", None)
        if saved is not None:
            sys.modules["app"] = saved
        clients.settings.cache_clear()


def swagger(env: Mapping[str, str]) -> dict[str, Any]:
    return CFNSwaggerGenerator().generate_swagger(load_app(env))


def operations(definition: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in definition["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def stage_environment(stage: str) -> dict[str, str]:
    config = CLIFactory(project_dir=str(PROJECT_DIR)).create_config_obj(chalice_stage_name=stage)
    return dict(config.environment_variables)


def stages() -> list[str]:
    return list(json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text())["stages"])


@pytest.mark.parametrize(
    ("env", "requirement", "definition"),
    [
        ({}, "sigv4", {"in": "header", "name": "Authorization", "x-amazon-apigateway-authtype": "awsSigv4"}),
        ({"CURRENCIES_WRITE_AUTH": "api_key"}, "api_key", {"in": "header", "name": "x-api-key", "type": "apiKey"}),
        (
            {"CURRENCIES_WRITE_AUTH": "cognito", "CURRENCIES_COGNITO_USER_POOL_ARNS": POOL},
            "cognito",
            {
                "x-amazon-apigateway-authtype": "cognito_user_pools",
                "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools", "providerARNs": [POOL]},
            },
        ),
    ],
)
@pytest.mark.parametrize("reads", ["none", "same"])
def test_every_write_carries_the_authorizer_and_reads_only_when_asked(
    env: dict[str, str], requirement: str, definition: dict[str, Any], reads: str
) -> None:
    api = swagger({**env, "CURRENCIES_READ_AUTH": reads})
    seen = set()
    for path, method, operation in operations(api):
        protected = method in WRITES or (reads == "same" and (path, method) not in PUBLIC_ALWAYS)
        assert operation.get("security") == ([{requirement: []}] if protected else None), (path, method)
        seen.add(method)
    assert seen >= WRITES | {"get"}
    assert list(api["securityDefinitions"]) == [requirement]
    assert api["securityDefinitions"][requirement].items() >= definition.items()


def test_the_local_stage_declares_no_authorizer() -> None:
    api = swagger(stage_environment("local"))
    assert [(path, method) for path, method, operation in operations(api) if "security" in operation] == []
    assert "securityDefinitions" not in api


@pytest.mark.parametrize("stage", [stage for stage in stages() if stage != "local"])
def test_every_deployed_stage_protects_its_writes(stage: str) -> None:
    api = swagger(stage_environment(stage))
    writes = [(path, method, operation) for path, method, operation in operations(api) if method in WRITES]
    assert len(writes) == 3
    for path, method, operation in writes:
        assert operation.get("security"), f"stage {stage}: {method.upper()} {path} is open to anyone"


# --- the local runtime's gate ---------------------------------------------------------------------

KEY, SECRET, TOKEN, REGION = "AKIDLOCAL", "local-secret", "local-token", "us-east-1"
GATE = LocalGate(access_key=KEY, secret_key=SECRET, session_token=TOKEN, region=REGION, api_key="k-123")
URL = "http://127.0.0.1:8123/currency"
BODY = b'{"symbol": "EUR", "rate": "1.1"}'


def route(**kwargs: Any) -> Any:
    """A route entry as app.py declares it (only the access attributes matter to the gate)."""
    from chalice.app import RouteEntry  # noqa: PLC0415

    return RouteEntry(lambda: None, "create", "/currency", "POST", **kwargs)


def signed(
    body: bytes = BODY, *, secret: str = SECRET, region: str = REGION, at: datetime | None = None
) -> dict[str, str]:
    """Headers of a request signed as botocore signs it (the README's example), optionally at another time."""
    request = AWSRequest(method="POST", url=URL, data=body, headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials(KEY, secret, TOKEN), "execute-api", region)
    if at is None:
        signer.add_auth(request)
    else:
        request.context["timestamp"] = at.strftime("%Y%m%dT%H%M%SZ")
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        request.headers["X-Amz-Security-Token"] = TOKEN
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={KEY}/{signer.credential_scope(request)}, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}, Signature={signature}"
        )
    return {"Host": "127.0.0.1:8123", **dict(request.headers.items())}


def refusal(check: Any) -> tuple[int, str, str] | None:
    try:
        check()
    except Refusal as refused:
        found = refused
    else:
        return None
    assert found.response_type in GATEWAY_ERROR_CODES  # a code the API definition knows too
    return found.status, found.message, found.response_type


def test_api_key_routes_want_the_local_key() -> None:
    entry = route(api_key_required=True)
    assert refusal(lambda: GATE.check(entry, "POST", URL, {}, BODY)) == FORBIDDEN
    assert refusal(lambda: GATE.check(entry, "POST", URL, {"X-Api-Key": "k-12"}, BODY)) == FORBIDDEN
    assert refusal(lambda: GATE.check(entry, "POST", URL, {"X-Api-Key": "k-123"}, BODY)) is None
    keyless = LocalGate(KEY, SECRET, TOKEN, REGION, api_key=None)
    assert refusal(lambda: keyless.check(entry, "POST", URL, {"x-api-key": ""}, BODY)) == FORBIDDEN


def test_iam_routes_want_a_valid_signature_by_the_local_credentials() -> None:
    entry = route(authorizer=IAMAuthorizer())
    assert refusal(lambda: GATE.check(entry, "POST", URL, signed(), BODY)) is None
    assert refusal(lambda: GATE.check(entry, "POST", URL, {"Host": "127.0.0.1:8123"}, BODY)) == MISSING_TOKEN
    assert refusal(lambda: GATE.check(entry, "POST", URL, signed(), BODY.replace(b"1.1", b"9.9"))) == BAD_SIGNATURE
    assert refusal(lambda: GATE.check(entry, "PUT", URL, signed(), BODY)) == BAD_SIGNATURE
    assert refusal(lambda: GATE.check(entry, "POST", URL, signed(secret="guessed"), BODY)) == BAD_SIGNATURE
    other_region = refusal(lambda: GATE.check(entry, "POST", URL, signed(region="eu-west-1"), BODY))
    assert other_region is not None
    assert other_region[0] == 403
    stale = signed(at=datetime.now(UTC) - timedelta(minutes=6))
    assert refusal(lambda: GATE.check(entry, "POST", URL, stale, BODY)) == EXPIRED_SIGNATURE
    recent = signed(at=datetime.now(UTC) - timedelta(minutes=4))
    assert refusal(lambda: GATE.check(entry, "POST", URL, recent, BODY)) is None
    not_sigv4 = {"Host": "127.0.0.1:8123", "Authorization": "Bearer abc"}
    assert refusal(lambda: GATE.check(entry, "POST", URL, not_sigv4, BODY)) is not None


def test_cognito_routes_want_a_token_that_is_not_verified_locally() -> None:
    entry = route(authorizer=CognitoUserPoolAuthorizer("cognito", provider_arns=[POOL]))
    claims = base64.urlsafe_b64encode(json.dumps({"cognito:username": "ana"}).encode()).decode().rstrip("=")
    token = f"eyJhbGciOiJub25lIn0.{claims}.c2ln"
    assert refusal(lambda: GATE.check(entry, "POST", URL, {}, BODY)) == UNAUTHORIZED
    assert refusal(lambda: GATE.check(entry, "POST", URL, {"Authorization": "not-a-jwt"}, BODY)) == UNAUTHORIZED
    assert refusal(lambda: GATE.check(entry, "POST", URL, {"Authorization": token}, BODY)) is None


def test_open_routes_pass_untouched() -> None:
    assert refusal(lambda: GATE.check(route(), "POST", URL, {}, BODY)) is None
