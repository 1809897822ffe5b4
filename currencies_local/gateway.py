"""The local runtime's stand-in for API Gateway's authorizers.

`chalice local` admits every request to routes with IAMAuthorizer, api_key_required=True or a
Cognito authorizer (it warns, or decodes a Cognito token without checking it). The local runtime
serves the API through `local_server` instead, which refuses what API Gateway would refuse
wherever that can be decided on this machine (`LocalGate` says how far that goes).
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from chalice import CognitoUserPoolAuthorizer, IAMAuthorizer
from chalice.app import Chalice
from chalice.local import ChaliceRequestHandler, LocalGateway, LocalGatewayException, RouteMatcher, create_local_server

from chalicelib.api.access import GATEWAY_ERROR_CODES

LOCAL_API_KEY_VARIABLE = "CURRENCIES_LOCAL_API_KEY"
"""The one key the local runtime accepts in `x-api-key` when routes require an API key."""

MISSING_TOKEN = (403, "Missing Authentication Token", "MISSING_AUTHENTICATION_TOKEN")
FORBIDDEN = (403, "Forbidden", "INVALID_API_KEY")
UNAUTHORIZED = (401, "Unauthorized", "UNAUTHORIZED")
BAD_SIGNATURE = (
    403,
    "The request signature we calculated does not match the signature you provided.",
    "INVALID_SIGNATURE",
)
EXPIRED_SIGNATURE = (
    403,
    "Signature expired: the request's X-Amz-Date is more than 5 minutes from now.",
    "INVALID_SIGNATURE",
)
_SIGV4 = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_CLOCK_SKEW = timedelta(minutes=5)


class Refusal(Exception):
    """API Gateway's answer to a request its authorizer refuses: a status, its message and its
    response type, which the body names as the API's error code (`access.GATEWAY_ERROR_CODES`)."""

    def __init__(self, status: int, message: str, response_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.response_type = response_type

    def body(self) -> dict[str, str]:
        return {"error": GATEWAY_ERROR_CODES[self.response_type], "message": self.message}


@dataclass(frozen=True)
class LocalGate:
    """Checks a request against its route's declared access, as far as the local runtime can.

    - api_key_required: `x-api-key` must equal the local key (`CURRENCIES_LOCAL_API_KEY`); with no
      local key every request is refused, as API Gateway refuses all keys until a usage plan has one.
    - IAMAuthorizer: a SigV4 signature for service `execute-api` in this region, made with the local
      runtime's own credentials, dated within 5 minutes. IAM policies are not evaluated.
    - Cognito: a bearer JWT must be present and carry claims; its signature, issuer and expiry are
      NOT checked (there is no user pool here).
    """

    access_key: str | None
    secret_key: str | None
    session_token: str | None
    region: str
    api_key: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LocalGate:
        return cls(
            access_key=env.get("AWS_ACCESS_KEY_ID"),
            secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
            session_token=env.get("AWS_SESSION_TOKEN"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            api_key=env.get(LOCAL_API_KEY_VARIABLE) or None,
        )

    def check(self, route: Any, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> None:
        """Raise `Refusal` if API Gateway would refuse this request to this route entry."""
        lowered = {name.lower(): value for name, value in headers.items()}
        if route.api_key_required:
            given = lowered.get("x-api-key", "")
            if not self.api_key or not hmac.compare_digest(given.encode(), self.api_key.encode()):
                raise Refusal(*FORBIDDEN)
        if isinstance(route.authorizer, IAMAuthorizer):
            self._check_signature(method, url, lowered, body or b"")
        elif isinstance(route.authorizer, CognitoUserPoolAuthorizer) and not _jwt_claims(
            lowered.get("authorization", "")
        ):
            raise Refusal(*UNAUTHORIZED)

    def _check_signature(self, method: str, url: str, headers: dict[str, str], body: bytes) -> None:

        authorization = headers.get("authorization")
        if not authorization:
            raise Refusal(*MISSING_TOKEN)
        parsed = _SIGV4.fullmatch(authorization.strip())
        amz_date = headers.get("x-amz-date", "")
        if parsed is None or not amz_date:
            raise Refusal(
                403,
                f"Authorization header is not a SigV4 signature with X-Amz-Date: {authorization}",
                "DEFAULT_4XX",
            )
        if parsed["service"] != "execute-api" or parsed["region"] != self.region:
            raise Refusal(
                403,
                f"Credential should be scoped to region {self.region!r} and service 'execute-api'.",
                "INVALID_SIGNATURE",
            )
        if not self.access_key or not self.secret_key or parsed["key"] != self.access_key:
            raise Refusal(403, "The security token included in the request is invalid.", "ACCESS_DENIED")
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise Refusal(*BAD_SIGNATURE) from None
        if abs(datetime.now(UTC) - signed_at) > _CLOCK_SKEW:
            raise Refusal(*EXPIRED_SIGNATURE)
        signed = parsed["signed"].split(";")
        if "host" not in signed or any(name not in headers for name in signed):
            raise Refusal(*BAD_SIGNATURE)
        # Recompute the signature over exactly the headers the caller signed.
        request = AWSRequest(method=method, url=url, headers={name: headers[name] for name in signed}, data=body)
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(
            Credentials(self.access_key, self.secret_key, self.session_token), "execute-api", self.region
        )
        canonical = signer.canonical_request(request)
        if signer.signed_headers(signer.headers_to_sign(request)) != parsed["signed"]:
            raise Refusal(*BAD_SIGNATURE)  # a header botocore never signs (user-agent) was signed
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        if not hmac.compare_digest(expected, parsed["signature"]):
            raise Refusal(*BAD_SIGNATURE)


def _jwt_claims(authorization: str) -> dict[str, Any] | None:
    """The claims of a JWT (with or without `Bearer `), unverified; None if it is not one."""
    token = authorization.removeprefix("Bearer ").strip()
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


def local_server(app: Chalice, config: Any, host: str, port: int, env: Mapping[str, str] = os.environ) -> Any:
    """`chalice.local.create_local_server`, with `LocalGate` in front of every route: a LocalDevServer."""
    gate = LocalGate.from_env(env)
    # chalice local then warns that it admits every request to these routes: the gate has checked them.
    warnings.filterwarnings("ignore", message=r"\w+Authorizer .*not a supported in local mode", category=UserWarning)
    matcher = RouteMatcher(list(app.routes))

    class RefusedError(LocalGatewayException):
        def __init__(self, refusal: Refusal) -> None:
            super().__init__(
                {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
                json.dumps(refusal.body()).encode(),
            )
            self.CODE = refusal.status

    class GatedGateway(LocalGateway):
        def handle_request(self, method: str, path: str, headers: Any, body: bytes | None) -> Any:
            try:
                matched = matcher.match_route(path)
            except ValueError:
                matched = None  # unknown path: LocalGateway answers as API Gateway does
            route = app.routes[matched.route].get(method.upper()) if matched else None
            if route is not None:
                host_header = next((value for name, value in headers.items() if name.lower() == "host"), host)
                try:
                    gate.check(route, method.upper(), f"http://{host_header}{path}", headers, body)
                except Refusal as refusal:
                    raise RefusedError(refusal) from None
            return super().handle_request(method, path, headers, body)

    class GatedHandler(ChaliceRequestHandler):
        def __init__(self, request: Any, client_address: Any, server: Any, app_object: Chalice, config: Any) -> None:
            # Same as ChaliceRequestHandler's, with the gated gateway (BaseHTTPRequestHandler
            # serves the request from its __init__, so the gateway must exist before).
            self.local_gateway = GatedGateway(app_object, config)
            super(ChaliceRequestHandler, self).__init__(request, client_address, server)

    dev_server = create_local_server(app, config, host, port)
    dev_server.server.RequestHandlerClass = functools.partial(GatedHandler, app_object=app, config=config)
    return dev_server
