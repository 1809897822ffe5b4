"""A real Prometheus and Pushgateway beside the pipeline under test, and a client for Prometheus's HTTP API."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PrometheusAPI:
    url: str

    def _get(self, path: str, params: dict[str, str]) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            payload = json.load(response)
        assert payload["status"] == "success", payload
        return payload["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant vector (or scalar as a one-element list); raises on a PromQL error."""
        params = {"query": expr} if at is None else {"query": expr, "time": str(at)}
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
        return self._get("/api/v1/query_range", params)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an expression that yields one series (None when it yields none)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} gave {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def targets_up(self) -> dict[str, bool]:
        targets = self._get("/api/v1/targets", {"state": "active"})["activeTargets"]
        return {target["labels"]["job"]: target["health"] == "up" for target in targets}
