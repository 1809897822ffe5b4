"""The local runtime's API refuses what API Gateway would refuse, where it can tell on this machine.

Each test serves app.py as `currencies up` does (`_load_app` with the local stage's settings plus
the test's, then `gateway.local_server`) on a free port, in front of this module's own moto server.
A refused write answers API Gateway's JSON and leaves the table untouched; reads stay open unless
CURRENCIES_READ_AUTH=same; `/openapi.json` is always open.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from chalicelib import clients
from chalicelib.api import access
from currencies_local import gateway
from currencies_local.moto import REGION, aws_environment, start_moto
from currencies_local.pipeline import _load_app
from currencies_local.processes import free_port
from currencies_local.provision import Resources, provision
from tests.unit.test_access import loggers_left_as_they_were

LOCAL_KEY = "local-key-7d1e"


@pytest.fixture(scope="module")
def resources() -> Iterator[Resources]:
    """A moto server of this module's own with the pipeline's resources, every boto3 client pointed at it."""
    port = free_port()
    server = start_moto("127.0.0.1", port, Path(tempfile.mkdtemp(prefix="currencies-auth-test-")))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_environment(f"http://127.0.0.1:{port}").items():
            patch.setenv(name, value)
        yield provision()
    server.stop()


@contextmanager
def local_api(resources: Resources, **settings: str) -> Iterator[str]:
    """The local runtime's API server with these auth settings over the `local` stage's; its base URL."""
    saved_environ, saved_app = dict(os.environ), sys.modules.get("app")
    server = None
    try:
        for name in (*access.SETTING_NAMES, gateway.LOCAL_API_KEY_VARIABLE):
            os.environ.pop(name, None)
        os.environ[gateway.LOCAL_API_KEY_VARIABLE] = LOCAL_KEY
        with loggers_left_as_they_were("currencies", "chalicelib"):
            app_module, config = _load_app({**resources.environment(), **settings})
        port = free_port()
        server = gateway.local_server(app_module.app, config, "127.0.0.1", port).server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        # Leave the process as it was: later tests load the app their own way.
        os.environ.clear()
        os.environ.update(saved_environ)
        sys.modules.pop("app", None)
        if saved_app is not None:
            sys.modules["app"] = saved_app
        for client in vars(clients).values():
            if hasattr(client, "cache_clear"):
                client.cache_clear()


def sigv4_request(method: str, url: str, body: str | None = None) -> requests.Response:
    """A request signed for API Gateway with whatever credentials boto3 finds (the README's example)."""
    credentials = boto3.Session().get_credentials().get_frozen_credentials()
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    return requests.request(method, url, data=body, headers=dict(request.headers), timeout=10)


def stored(resources: Resources, symbol: str) -> dict[str, Any] | None:
    return boto3.resource("dynamodb").Table(resources.table_name).get_item(Key={"symbol": symbol}).get("Item")


def assert_refused(response: requests.Response, refusal: tuple[int, str, str]) -> None:
    """Refused as API Gateway refuses, in the body every error of this API has (access.GATEWAY_ERROR_CODES)."""
    status, message, response_type = refusal
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": access.GATEWAY_ERROR_CODES[response_type], "message": message}


def test_a_keyless_write_is_refused_and_reads_stay_open(resources: Resources) -> None:
    with local_api(resources, CURRENCIES_WRITE_AUTH="api_key") as api:
        body = '{"symbol": "AAA", "rate": "1.5"}'
        assert_refused(requests.post(f"{api}/currency", data=body, timeout=10), gateway.FORBIDDEN)
        wrong = requests.post(f"{api}/currency", data=body, headers={"x-api-key": LOCAL_KEY[:-1]}, timeout=10)
        assert_refused(wrong, gateway.FORBIDDEN)
        assert_refused(requests.put(f"{api}/currency/AAA", data='{"rate": "2"}', timeout=10), gateway.FORBIDDEN)
        assert_refused(requests.delete(f"{api}/currency/AAA", timeout=10), gateway.FORBIDDEN)
        assert stored(resources, "AAA") is None
        listed = requests.get(f"{api}/currency", timeout=10)
        assert listed.status_code == 200
        assert "AAA" not in {rate["symbol"] for rate in listed.json()["currencies"]}

        created = requests.post(f"{api}/currency", data=body, headers={"x-api-key": LOCAL_KEY}, timeout=10)
        assert created.status_code == 201, created.text
        assert stored(resources, "AAA") is not None
        assert requests.get(f"{api}/currency/AAA", timeout=10).json()["rate"] == "1.5"


def test_an_unsigned_write_is_refused_and_a_signed_one_accepted(resources: Resources) -> None:
    with local_api(resources, CURRENCIES_WRITE_AUTH="iam") as api:
        body = '{"symbol": "BBB", "rate": "2.5"}'
        assert_refused(requests.post(f"{api}/currency", data=body, timeout=10), gateway.MISSING_TOKEN)
        assert_refused(requests.delete(f"{api}/currency/BBB", timeout=10), gateway.MISSING_TOKEN)
        assert stored(resources, "BBB") is None
        assert requests.get(f"{api}/currency", timeout=10).status_code == 200

        # A valid signature over another body: API Gateway's signature mismatch, nothing written.
        signed = sigv4_request("POST", f"{api}/currency", body)
        tampered = requests.post(
            f"{api}/currency", data=body.replace("2.5", "9.5"), headers=dict(signed.request.headers), timeout=10
        )
        assert_refused(tampered, gateway.BAD_SIGNATURE)
        assert signed.status_code == 201, signed.text
        assert str(stored(resources, "BBB")["rate"]) == "2.5"  # type: ignore[index]
        assert sigv4_request("DELETE", f"{api}/currency/BBB").status_code == 200
        assert requests.get(f"{api}/currency/BBB", timeout=10).status_code == 404


def test_a_cognito_write_without_a_token_is_refused(resources: Resources) -> None:
    pool = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbCdEf123"
    with local_api(resources, CURRENCIES_WRITE_AUTH="cognito", CURRENCIES_COGNITO_USER_POOL_ARNS=pool) as api:
        refused = requests.post(f"{api}/currency", data='{"symbol": "CCC", "rate": "3"}', timeout=10)
        assert_refused(refused, gateway.UNAUTHORIZED)
        assert stored(resources, "CCC") is None
        assert requests.get(f"{api}/currency", timeout=10).status_code == 200


def test_protected_reads_want_a_signature_but_the_contract_stays_public(resources: Resources) -> None:
    with local_api(resources, CURRENCIES_WRITE_AUTH="iam", CURRENCIES_READ_AUTH="same") as api:
        assert_refused(requests.get(f"{api}/currency", timeout=10), gateway.MISSING_TOKEN)
        assert_refused(requests.get(f"{api}/currency/EUR/history", timeout=10), gateway.MISSING_TOKEN)
        assert sigv4_request("GET", f"{api}/currency").status_code == 200
        contract = requests.get(f"{api}/openapi.json", timeout=10)
        assert contract.status_code == 200
        assert contract.json()["info"]["title"] == "currencies"


def test_the_local_stage_stays_open(resources: Resources) -> None:
    with local_api(resources) as api:  # the `local` stage's own settings, as `currencies up` runs them
        created = requests.post(f"{api}/currency", data='{"symbol": "DDD", "rate": "4"}', timeout=10)
        assert created.status_code == 201, created.text
        assert requests.delete(f"{api}/currency/DDD", timeout=10).status_code == 200
