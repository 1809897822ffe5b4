"""moto server that accepts Chalice's REST API definition: a test-only adaptation, never shipped.

Why it exists: `chalice deploy` creates its REST API with API Gateway's ImportRestApi
(and updates it with PutRestApi), sending a Swagger 2.0 document. moto 5.2.5 implements
those calls for OpenAPI 3 only: it refuses a document with a `swagger` key and reads a
mandatory `info.description`. AWS itself accepts Swagger 2.0, so this is a gap of the
emulator, not of the project. This wrapper rewrites that one request's body (the version
key, and an empty description when there is none) before moto's own app handles it;
every other request goes to moto unchanged. The paths and their `x-amazon-apigateway-
integration`s are what moto builds the resources, methods and integrations from, and they
are the same in both versions.

    python -m tests.integration.moto_apigateway -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def as_openapi3(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the version key moto reads; paths and extensions are left as they are."""
    if "swagger" not in document:
        return document
    adapted = {key: value for key, value in document.items() if key != "swagger"}
    adapted["openapi"] = "3.0.1"
    adapted["info"] = {"description": "", **document.get("info", {})}
    return adapted


def _is_api_definition(environ: dict[str, Any]) -> bool:
    """ImportRestApi (POST /restapis?mode=import) or PutRestApi (PUT /restapis/ID), signed for API Gateway."""
    signed_for = environ.get("HTTP_AUTHORIZATION", "")
    method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", "")
    return (
        "/apigateway/aws4_request" in signed_for
        and path.startswith("/restapis")
        and ((method == "POST" and path.rstrip("/") == "/restapis") or (method == "PUT" and path.count("/") == 2))
    )


class AcceptSwagger2:
    """WSGI middleware: rewrites a Swagger 2.0 API definition as moto's ImportRestApi/PutRestApi want it."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if _is_api_definition(environ):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            with contextlib.suppress(ValueError):  # not JSON: moto answers it as it would
                body = json.dumps(as_openapi3(json.loads(body))).encode()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self._app(environ, start_response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("-p", "--port", type=int, required=True, help="port to listen on")
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, AcceptSwagger2(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
