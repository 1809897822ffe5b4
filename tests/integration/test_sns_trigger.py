"""The original example's wiring: the consumer subscribed straight to the topic (by configuration).

app.py registers its consumer at import time from CURRENCIES_CONSUMER_TRIGGER, so this
runs in a fresh interpreter with `sns` set, invoking the handler through Chalice's test
client with an SNS event, against the real Elasticsearch node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from currencies_local.pipeline import PROJECT_DIR, LocalPipeline
from tests.integration.engines import EngineUnderTest
from tests.integration.test_delivery import change

INVOKE = textwrap.dedent(
    """
    import json, sys
    from chalice.test import Client
    from app import app
    with Client(app, stage_name="local") as client:
        event = client.events.generate_sns_event(message=sys.argv[1])
        client.lambda_.invoke("index_changes", event)
    print(json.dumps({s.name: type(s).__name__ for s in app.event_sources}))
    """
)


def test_sns_trigger_indexes_through_the_same_core(pipeline: LocalPipeline, search: EngineUnderTest) -> None:
    assert pipeline.resources is not None
    env = {
        **os.environ,
        **pipeline.environment,
        "CURRENCIES_CONSUMER_TRIGGER": "sns",
    }
    message = change("NOK", "INSERT", 50, "11.2").to_json()
    result = subprocess.run(
        [sys.executable, "-c", INVOKE, message],
        cwd=PROJECT_DIR,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    sources = json.loads(result.stdout.splitlines()[-1])
    assert sources["index_changes"] == "SNSEventConfig"
    assert search.rates_for(["NOK"]) == {"NOK": "11.2"}
