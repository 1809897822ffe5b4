"""One Lambda "container" as a process of its own: imports app.py like Lambda does, runs the invocations it is given.

Read from stdin: {"environment": {...}, "handler": name, "events": [event, ...], "pause_s": seconds}.
Writes to stdout: {"responses": [...], "instances": [the metrics identity after each invocation]}.
Metrics leave only the way they leave a real container: the middleware's push to the Pushgateway.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

from chalice.local import LambdaContext

PROJECT_DIR = Path(__file__).resolve().parents[2]


def main() -> None:
    spec = json.load(sys.stdin)
    os.environ.update(spec["environment"])
    sys.path.insert(0, str(PROJECT_DIR))
    app = importlib.import_module("app")
    clients = importlib.import_module("chalicelib.clients")
    handler = getattr(app, spec["handler"])
    responses, instances = [], []
    for number, event in enumerate(spec["events"]):
        if number:
            time.sleep(spec.get("pause_s", 0))
        context = LambdaContext(os.environ["AWS_LAMBDA_FUNCTION_NAME"], memory_size=512, max_runtime_ms=60_000)
        responses.append(handler(event, context))
        instances.append(clients.metrics_pusher().instance)
    json.dump({"responses": responses, "instances": instances}, sys.stdout)


if __name__ == "__main__":
    main()
