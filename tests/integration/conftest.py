"""Real services for the integration tests, started once per session.

moto server and an Elasticsearch node run as real processes (the node is fetched
from Maven Central on first use). Set ELASTICSEARCH_URL to use a running node.
The pipeline under test is `LocalPipeline`, the same object `currencies up` runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from currencies_local.elasticsearch import start_elasticsearch
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import free_port
from tests.integration.engines import EngineUnderTest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    given = os.environ.get("ELASTICSEARCH_URL")
    if given:
        yield given
        return
    work_dir = Path(tempfile.mkdtemp(prefix="currencies-test-es-"))
    work_dir.chmod(0o711)
    port = free_port()
    node = start_elasticsearch("127.0.0.1", port, work_dir / "elasticsearch")
    yield f"http://127.0.0.1:{port}"
    node.stop()


@pytest.fixture(scope="session")
def pipeline(elasticsearch_url: str) -> Iterator[LocalPipeline]:
    options = Options(
        api_port=free_port(),
        moto_port=free_port(),
        metrics_port=free_port(),
        elasticsearch_url=elasticsearch_url,
        batch_size=10,
    )
    running = LocalPipeline(options)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session", params=["elasticsearch"])
def engine(request: pytest.FixtureRequest) -> EngineUnderTest:
    """Each real engine in turn, through the production sink."""
    return EngineUnderTest(request.param, request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(scope="session")
def search(pipeline: LocalPipeline) -> Elasticsearch:
    return Elasticsearch(pipeline.elasticsearch_url, request_timeout=10)
