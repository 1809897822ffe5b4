"""Unit tests talk to no server: moto's in-process mock must see AWS's own endpoints.

The local pipeline points this process's boto3 at its moto server (AWS_ENDPOINT_URL in
os.environ, as `currencies up` does); integration tests that ran earlier in the session
leave that variable naming a server that has stopped.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
