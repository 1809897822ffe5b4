"""Metrics of operator commands, pushed to the Pushgateway so dashboards can follow a run.

Each run gets a registry of its own: a run is one group (function="currencies-<operation>",
instance=<run id>) that it replaces (PUT) with its cumulative counts every few seconds and
at its end, so a pushed group never mixes two runs, even when one process runs several.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from types import TracebackType

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics

from chalicelib.observability.pushgateway import Pushgateway

log = logging.getLogger(__name__)

# `_created` series double the series count and no query here uses them.
disable_created_metrics()

PUSH_EVERY_S = 5.0
PUSH_TIMEOUT_S = 2.0


class OperationMetrics:
    """Counts of one run of one operation; pushes them while the run lasts when a gateway is configured.

    Use as a context manager: entering starts the periodic push, leaving pushes a last time.
    """

    def __init__(self, operation: str, pushgateway_url: str | None, run_id: str | None = None) -> None:
        self.operation = operation
        self.run_id = run_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        self.registry = CollectorRegistry(auto_describe=True)
        # Gauges of this run's progress, not counters: a run pushes its group once every few
        # seconds and a short run only once, so rate() over its counters would see nothing. The
        # janitor drops a finished run's group (gauges are not folded) once it has been idle.
        self._records = Gauge(
            "currencies_operation_records",
            "Records this run of an operator command has handled so far, by operation (verify, backfill, "
            "replay, redrive) and outcome (scanned, written, different, skipped, failed).",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self._finished = Gauge(
            "currencies_operation_finished_timestamp_seconds",
            "When this run of an operator command ended, by operation and result (e.g. clean, different, "
            "complete, interrupted, failed).",
            ["operation", "result"],
            registry=self.registry,
        )
        self._gateway = Pushgateway(pushgateway_url) if pushgateway_url else None
        self._stopped = threading.Event()
        self._pusher: threading.Thread | None = None
        self._warned = False

    def count(self, outcome: str, amount: int = 1) -> None:
        self._records.labels(self.operation, outcome).inc(amount)

    def start_at_zero(self, *outcomes: str) -> None:
        """Series from the first push, so a panel shows 0 rather than nothing while the run starts."""
        for outcome in outcomes:
            self._records.labels(self.operation, outcome)

    def finish(self, result: str) -> None:
        """Record how the run ended (e.g. clean, different, failed); pushed on leaving the context."""
        self._finished.labels(self.operation, result).set(time.time())

    def __enter__(self) -> OperationMetrics:
        if self._gateway is not None:
            self._pusher = threading.Thread(target=self._push_periodically, name="metrics-push", daemon=True)
            self._pusher.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stopped.set()
        if self._pusher is not None:
            self._pusher.join()
        self.push()

    def push(self) -> None:
        """Replace this run's group; a gateway that does not answer is logged once, never fatal to the run."""
        if self._gateway is None:
            return
        key = {"function": f"currencies-{self.operation}", "instance": self.run_id}
        try:
            self._gateway.replace(key, self.registry, PUSH_TIMEOUT_S)
        except Exception as error:
            if not self._warned:
                log.warning("could not push metrics to %s: %r", self._gateway.url, error)
                self._warned = True

    def _push_periodically(self) -> None:
        while not self._stopped.wait(PUSH_EVERY_S):
            self.push()
