"""The whole pipeline on one machine: moto, a search engine, the API and both event sources.

`LocalPipeline` is what `currencies up` runs and what the integration tests start,
so the tests exercise exactly what a user runs.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from chalice.cli.factory import CLIFactory
from prometheus_client import start_http_server

from chalicelib import clients
from chalicelib.api import access
from chalicelib.config import Engine
from chalicelib.observability.metrics import REGISTRY
from currencies_local import aws_limits, gateway
from currencies_local.elasticsearch import start_elasticsearch
from currencies_local.event_sources import LAMBDA_TIMEOUT_MS, QueueDepthSampler, QueuePoller, StreamPoller
from currencies_local.moto import REGION, aws_environment, start_moto
from currencies_local.opensearch import start_opensearch
from currencies_local.processes import ManagedProcess, StartupError, port_is_free
from currencies_local.prometheus import ScrapeTargets, start_prometheus, start_pushgateway, wait_for_first_scrape
from currencies_local.provision import Resources, provision

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENGINE_TITLES = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}


@dataclass(frozen=True)
class Options:
    host: str = "127.0.0.1"
    api_port: int = 8000
    moto_port: int = 5000
    engine: Engine = "elasticsearch"
    search_port: int = 9200
    metrics_port: int = 9108
    search_url: str | None = None
    """Use this running engine node instead of starting one."""
    moto_url: str | None = None
    """Use this running moto server instead of starting one."""
    batch_size: int = 10
    prometheus: bool = True
    """Also start Prometheus (the project's config and rules) and a Pushgateway."""
    prometheus_port: int = 9090
    pushgateway_port: int = 9091
    scrape_interval: str | None = None
    """Override prometheus.yml's scrape and rule interval (the tests use 1s)."""


@dataclass
class LocalPipeline:
    options: Options
    progress: Callable[[str], None] = lambda _: None
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="currencies-")))
    resources: Resources | None = None
    environment: dict[str, str] = field(default_factory=dict)
    """The handlers' settings (chalicelib.config) once started."""
    stream_poller: StreamPoller | None = None
    queue_poller: QueuePoller | None = None
    _queue_depths: QueueDepthSampler | None = None
    _sqs: Any = None
    _processes: list[ManagedProcess] = field(default_factory=list)
    _stoppers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        """The child processes started so far (moto server, the engine node, ...), in start order."""
        return tuple(self._processes)

    @property
    def api_url(self) -> str:
        return f"http://{self.options.host}:{self.options.api_port}"

    @property
    def moto_url(self) -> str:
        return self.options.moto_url or f"http://{self.options.host}:{self.options.moto_port}"

    @property
    def search_url(self) -> str:
        return self.options.search_url or f"http://{self.options.host}:{self.options.search_port}"

    @property
    def engine_title(self) -> str:
        return ENGINE_TITLES[self.options.engine]

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.options.metrics_port}/metrics"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.options.host}:{self.options.prometheus_port}"

    @property
    def pushgateway_url(self) -> str:
        return f"http://{self.options.host}:{self.options.pushgateway_port}"

    def start(self) -> None:
        """Start everything, in dependency order; on any failure, stop what was started."""
        try:
            self._check_ports()
            self._start()
        except BaseException:
            self.stop()
            raise

    def _check_ports(self) -> None:
        wanted = {
            "API": ("--api-port", self.options.api_port),
            "metrics": ("--metrics-port", self.options.metrics_port),
        }
        if self.options.moto_url is None:
            wanted["moto"] = ("--moto-port", self.options.moto_port)
        if self.options.search_url is None:
            wanted[self.engine_title] = ("--search-port", self.options.search_port)
        if self.options.prometheus:
            wanted["Prometheus"] = ("--prometheus-port", self.options.prometheus_port)
            wanted["Pushgateway"] = ("--pushgateway-port", self.options.pushgateway_port)
        for name, (flag, port) in wanted.items():
            if not port_is_free(self.options.host, port):
                raise StartupError(
                    f"port {port} ({name}) is already in use by another program; stop it or pick another with {flag}"
                )

    def _start(self) -> None:
        options = self.options
        self.work_dir.chmod(0o711)  # the Elasticsearch user must reach its data dir below this one
        # Ports are bound as early as possible: a port checked free can be taken by anyone's
        # outgoing connection while the engine starts.
        metrics_server, _ = start_http_server(options.metrics_port, addr=options.host, registry=REGISTRY)
        self._stoppers.append(lambda: _close(metrics_server))
        os.environ.update(aws_environment(self.moto_url))
        aws_limits.enforce()  # moto takes messages AWS refuses: refuse them here as AWS would
        if options.moto_url is None:
            self.progress(f"starting moto server on {self.moto_url}")
            self._processes.append(start_moto(options.host, options.moto_port, self.work_dir))
        if options.prometheus:
            # Started early: Prometheus takes about 5 s to begin scraping, overlapping the engine's start.
            self._start_prometheus()
        if options.search_url is None:
            start = start_opensearch if options.engine == "opensearch" else start_elasticsearch
            work_dir = self.work_dir / options.engine
            self._processes.append(start(options.host, options.search_port, work_dir, self.progress))
        self.progress("creating the table, topic, queue and dead-letter queue")
        self.resources = provision()
        self.environment = {
            **self.resources.environment(),
            "CURRENCIES_SEARCH_ENGINE": options.engine,
            "CURRENCIES_SEARCH_URL": self.search_url,
            "CURRENCIES_BATCH_SIZE": str(options.batch_size),
            "CURRENCIES_CONSUMER_TRIGGER": "sqs",
            # The local queue poller honours partial batch responses (ReportBatchItemFailures).
            "CURRENCIES_PARTIAL_BATCH_RESPONSE": "true",
            # The local stage's API is open; `CURRENCIES_WRITE_AUTH=api_key currencies up` tries auth locally.
            **{name: os.environ[name] for name in access.SETTING_NAMES if name in os.environ},
        }
        app_module, config = _load_app(self.environment)
        # Build the handlers' clients now, in one thread (boto3's default session is not
        # thread-safe), and have the index templates before the first event arrives.
        clients.store(), clients.sns(), clients.sqs(), clients.history()
        try:
            clients.sink().ensure_indices()
        except Exception as error:
            raise StartupError(
                f"{self.engine_title} at {self.search_url} refused the index set-up or did not answer: {error}"
            ) from error
        # chalice local admits every request whatever a route's authorizer; this server refuses what it can.
        api = gateway.local_server(app_module.app, config, options.host, options.api_port).server
        self._stoppers.append(api.server_close)  # closes the bound socket even if it never served

        self._sqs = boto3.client("sqs")
        failures_url = self.resources.stream_failures_url
        self.stream_poller = StreamPoller(
            boto3.client("dynamodbstreams"),
            self.resources.stream_arn,
            app_module.relay_changes,
            region=REGION,
            on_failure=lambda description: self._sqs.send_message(
                QueueUrl=failures_url, MessageBody=json.dumps(description)
            ),
        )
        self.queue_poller = QueuePoller(
            self._sqs,
            self.resources.queue_url,
            self.resources.queue_arn,
            app_module.index_changes,
            region=REGION,
            batch_size=options.batch_size,
        )
        self._queue_depths = QueueDepthSampler(
            self._sqs, {"consumer": self.resources.queue_url, "dead_letter": self.resources.dlq_url}
        )
        for poller in (self.stream_poller, self.queue_poller, self._queue_depths):
            poller.start()
            self._stoppers.append(poller.stop)
        if options.prometheus:
            # Ready means scraped: a counter's first sample must be taken before the first request,
            # or rate() cannot see that request.
            wait_for_first_scrape(self.prometheus_url, job="currencies", timeout_s=40)
        # The API answers last (its socket is bound already): once it does, everything behind it runs.
        threading.Thread(target=api.serve_forever, name="api", daemon=True).start()
        self._stoppers.append(api.shutdown)  # stops first: no request reaches a pipeline being stopped

    def _start_prometheus(self) -> None:
        options = self.options
        self.progress(f"starting the Pushgateway on {self.pushgateway_url} and Prometheus on {self.prometheus_url}")
        work_dir = self.work_dir / "prometheus"
        self._processes.append(start_pushgateway(options.host, options.pushgateway_port, work_dir))
        targets = ScrapeTargets(
            metrics=f"{options.host}:{options.metrics_port}",
            pushgateway=f"{options.host}:{options.pushgateway_port}",
            prometheus=f"{options.host}:{options.prometheus_port}",
        )
        self._processes.append(
            start_prometheus(options.host, options.prometheus_port, work_dir, targets, interval=options.scrape_interval)
        )

    def dead_letter_depth(self) -> int:
        """The dead-letter queue's depth as last sampled (what /metrics shows)."""
        return int(REGISTRY.get_sample_value("currencies_queue_messages", {"queue": "dead_letter"}) or 0)

    def stop(self) -> None:
        """Stop in reverse order: pollers and servers first, then the engine and moto."""
        for stopper in reversed(self._stoppers):
            stopper()
        for poller in (self.stream_poller, self.queue_poller, self._queue_depths):
            if poller is not None and poller.is_alive():
                # An invocation in flight finishes first (bounded by the Lambda timeout).
                poller.join(timeout=LAMBDA_TIMEOUT_MS / 1000 + 5)
        for process in reversed(self._processes):
            process.stop()
        self._stoppers.clear()
        self._processes.clear()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _close(server: Any) -> None:
    server.shutdown()
    server.server_close()


def _load_app(environment: dict[str, str]) -> tuple[Any, Any]:
    """Import app.py the way `chalice local` does: the `local` stage's settings, then ours on top."""
    factory = CLIFactory(project_dir=str(PROJECT_DIR), environ=os.environ)
    config = factory.create_config_obj(chalice_stage_name="local")
    if "app" in sys.modules:
        # A second pipeline in one process (the tests): app.py reads its settings at
        # import, so it is imported afresh, with fresh clients.
        for client in vars(clients).values():
            if hasattr(client, "cache_clear"):
                client.cache_clear()
        del sys.modules["app"]
    factory.load_chalice_app(environment_variables={**config.environment_variables, **environment})
    return importlib.import_module("app"), config
