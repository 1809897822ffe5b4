"""moto server with the one DynamoDB guarantee moto lacks here: a write is atomic.

moto server answers each request in a thread of its own, and its DynamoDB backend takes
no lock: two conditional UpdateItems of one item can both pass their condition and both
apply, and their stream records can come out in the other order. Eight writers racing on
three symbols showed both (two records with the same revision; a history out of revision
order), where DynamoDB serialises the writes of an item. This runs moto's own app, with
DynamoDB's write calls made one at a time; every other call stays concurrent (SQS long
polls must not wait for each other).

    python -m currencies_local.moto_server -H 127.0.0.1 -p 5000 [--access-log]

No line per request unless `--access-log`: the pipeline's own polling makes dozens of calls a
second, and writing their lines took ~8 % of moto's CPU under load (a py-spy profile at 30 writes/s).
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


class AtomicDynamoDBWrites:
    """WSGI middleware: DynamoDB write operations (by their `X-Amz-Target`) run one at a time."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        service, _, operation = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
        if service.startswith("DynamoDB_") and operation in WRITE_OPERATIONS:
            with self._lock:  # moto does the whole write (and its stream record) inside the call
                return self._app(environ, start_response)
        return self._app(environ, start_response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port to listen on")
    parser.add_argument("--access-log", action="store_true", help="log a line per request")
    args = parser.parse_args()
    if not args.access_log:  # errors are still logged
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs it returns from it
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, AtomicDynamoDBWrites(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
