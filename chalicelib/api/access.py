"""Who may call which route: the stage's auth settings turned into Chalice route arguments.

API Gateway enforces these, not our code: `app.py` passes `RouteAccess.write` to every
POST/PUT/DELETE route and `RouteAccess.read` to every GET route except `/openapi.json`,
and `chalice package`/`chalice deploy` turn them into the API definition's security
requirements. Settings (a stage's `environment_variables`):

- `CURRENCIES_WRITE_AUTH`: `iam` (default, SigV4-signed requests), `cognito`, `api_key` or `none`.
- `CURRENCIES_READ_AUTH`: `none` (default, public reads) or `same` (reads need what writes need).
- `CURRENCIES_COGNITO_USER_POOL_ARNS`: comma-separated user pool ARNs, required by `cognito`.

Secure by default: a stage that says nothing gets IAM-protected writes; only the `local`
stage opts out. `chalice local` lets every request through whatever the route declares, so
`currencies_local.gateway` stands in for API Gateway in the local runtime where it honestly can.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chalice import CognitoUserPoolAuthorizer, IAMAuthorizer
from chalice.app import Authorizer

from chalicelib.config import ConfigError

WriteAuth = Literal["iam", "cognito", "api_key", "none"]
ReadAuth = Literal["none", "same"]
WRITE_AUTHS: tuple[WriteAuth, ...] = ("iam", "cognito", "api_key", "none")
READ_AUTHS: tuple[ReadAuth, ...] = ("none", "same")
COGNITO_AUTHORIZER_NAME = "cognito"
"""The authorizer's name in the API definition (its securityDefinitions key)."""
GATEWAY_ERROR_CODES: dict[str, str] = {
    "UNAUTHORIZED": "unauthorized",  # 401: no valid Cognito token
    "MISSING_AUTHENTICATION_TOKEN": "missing_authentication_token",  # 403: unsigned (IAM), or no such path
    "INVALID_SIGNATURE": "invalid_signature",  # 403: a SigV4 signature that does not verify, or is stale
    "EXPIRED_TOKEN": "expired_token",
    "ACCESS_DENIED": "access_denied",  # 403: signed, but the caller's IAM policy does not allow it
    "INVALID_API_KEY": "invalid_api_key",  # 403: no key, or not one of the usage plan's
    "THROTTLED": "throttled",
    "QUOTA_EXCEEDED": "quota_exceeded",
    "REQUEST_TOO_LARGE": "request_too_large",
    "DEFAULT_4XX": "request_refused",
    "DEFAULT_5XX": "gateway_error",
}
"""API Gateway's response types -> this API's error codes. Requests API Gateway itself answers
(refused before any handler runs) get the body every handler error has, `{"error": CODE,
"message": TEXT}`, instead of API Gateway's `{"message": TEXT}` (`currencies package` writes
them into the API definition; `currencies_local.gateway` answers the same way)."""
SETTING_NAMES = ("CURRENCIES_WRITE_AUTH", "CURRENCIES_READ_AUTH", "CURRENCIES_COGNITO_USER_POOL_ARNS")
"""What `currencies up` takes from its own environment over the `local` stage's (to try auth locally).
The local API key (`currencies_local.gateway`) is not among them: it never reaches the handlers'
settings (nor the lock file that records them)."""

_POOL_ARN = re.compile(r"arn:aws[a-z-]*:cognito-idp:[a-z0-9-]+:\d{12}:userpool/[\w-]+_[0-9a-zA-Z]+")


@dataclass(frozen=True)
class RouteAccess:
    """A stage's access rules for writes and reads."""

    write_auth: WriteAuth = "iam"
    read_auth: ReadAuth = "none"
    cognito_user_pool_arns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.write_auth not in WRITE_AUTHS:
            raise ConfigError(f"CURRENCIES_WRITE_AUTH must be one of {', '.join(WRITE_AUTHS)}, got {self.write_auth!r}")
        if self.read_auth not in READ_AUTHS:
            raise ConfigError(f"CURRENCIES_READ_AUTH must be 'none' or 'same', got {self.read_auth!r}")
        if self.write_auth == "cognito" and not self.cognito_user_pool_arns:
            raise ConfigError(
                "CURRENCIES_WRITE_AUTH=cognito needs CURRENCIES_COGNITO_USER_POOL_ARNS "
                "(comma-separated arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID)"
            )
        for arn in self.cognito_user_pool_arns:
            if not _POOL_ARN.fullmatch(arn):
                raise ConfigError(f"CURRENCIES_COGNITO_USER_POOL_ARNS has {arn!r}, not a Cognito user pool ARN")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RouteAccess:
        pools = tuple(arn.strip() for arn in env.get("CURRENCIES_COGNITO_USER_POOL_ARNS", "").split(",") if arn.strip())
        return cls(
            write_auth=env.get("CURRENCIES_WRITE_AUTH", "iam").strip().lower(),  # type: ignore[arg-type]
            read_auth=env.get("CURRENCIES_READ_AUTH", "none").strip().lower(),  # type: ignore[arg-type]
            cognito_user_pool_arns=pools,
        )

    @functools.cached_property
    def write(self) -> dict[str, Any]:
        """Keyword arguments for `app.route` on a route that changes data."""
        if self.write_auth == "api_key":
            return {"api_key_required": True}
        authorizer = self._authorizer()
        return {"authorizer": authorizer} if authorizer else {}

    @property
    def read(self) -> dict[str, Any]:
        """Keyword arguments for `app.route` on a route that only reads data."""
        return self.write if self.read_auth == "same" else {}

    def _authorizer(self) -> Authorizer | None:
        # One instance shared by all routes: one security definition in the API.
        if self.write_auth == "iam":
            return IAMAuthorizer()
        if self.write_auth == "cognito":
            return CognitoUserPoolAuthorizer(COGNITO_AUTHORIZER_NAME, provider_arns=list(self.cognito_user_pool_arns))
        return None
