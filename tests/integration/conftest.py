"""Real services for the integration tests, started once per session.

moto server, an Elasticsearch node and an OpenSearch node run as real processes
(fetched from Maven Central on first use); set ELASTICSEARCH_URL or OPENSEARCH_URL
to use a running node instead. Tests that take `engine` or `pipeline` run once per
engine. The pipeline under test is `LocalPipeline`, the same object `currencies up` runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from currencies_local.elasticsearch import start_elasticsearch
from currencies_local.opensearch import free_http_port, start_opensearch
from currencies_local.pipeline import LocalPipeline, Options
from currencies_local.processes import ManagedProcess, free_port
from tests.integration.engines import EngineUnderTest
from tests.integration.observability import PrometheusAPI

ENGINES = ["elasticsearch", "opensearch"]
ENGINE_PROCESSES: dict[str, ManagedProcess] = {}
"""The engine nodes this session started (not those given by URL), for fault tests that freeze one."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def elasticsearch_url() -> Iterator[str]:
    yield from _node("elasticsearch", "ELASTICSEARCH_URL", start_elasticsearch, free_port())


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    yield from _node("opensearch", "OPENSEARCH_URL", start_opensearch, free_http_port())


def _node(name: str, variable: str, start: Callable[..., ManagedProcess], port: int) -> Iterator[str]:
    given = os.environ.get(variable)
    if given:
        yield given
        return
    work_dir = Path(tempfile.mkdtemp(prefix="currencies-test-"))
    work_dir.chmod(0o711)
    node = start("127.0.0.1", port, work_dir / "node")
    ENGINE_PROCESSES[name] = node
    yield f"http://127.0.0.1:{port}"
    del ENGINE_PROCESSES[name]
    node.stop()


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> EngineUnderTest:
    """Each real engine in turn, through the production sink."""
    return EngineUnderTest(request.param, request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(scope="session")
def pipeline(engine: EngineUnderTest) -> Iterator[LocalPipeline]:
    """The whole pipeline on the engine under test (moto server started afresh)."""
    options = Options(
        api_port=free_port(),
        moto_port=free_port(),
        metrics_port=free_port(),
        engine=engine.name,  # type: ignore[arg-type]
        search_url=engine.url,
        batch_size=10,
        prometheus_port=free_port(),
        pushgateway_port=free_port(),
        scrape_interval="1s",  # so a test sees its traffic in Prometheus within seconds
    )
    running = LocalPipeline(options)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def search(pipeline: LocalPipeline, engine: EngineUnderTest) -> EngineUnderTest:
    """Read access to the indices the pipeline writes."""
    return engine


@dataclass(frozen=True)
class Observability:
    """A real Pushgateway and a real Prometheus (the project's config and rules) scraping the pipeline."""

    pushgateway_url: str
    prometheus: PrometheusAPI


@pytest.fixture(scope="session")
def observability(pipeline: LocalPipeline) -> Observability:
    """The Prometheus and Pushgateway the pipeline started, as `currencies up` does."""
    return Observability(pipeline.pushgateway_url, PrometheusAPI(pipeline.prometheus_url))
