"""Prometheus metrics of the scorer (GET /metrics): latency, requests by outcome, fallbacks, models in use."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ScorerMetrics:
    """The scorer's metrics, in a registry of their own (one per app, so tests can build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("fincoach_scorer_request_seconds", "Request latency by endpoint",
                                 ["endpoint"], buckets=_BUCKETS, registry=self.registry)
        self.requests = Counter("fincoach_scorer_requests_total", "Requests by endpoint and outcome",
                                ["endpoint", "outcome"], registry=self.registry)
        self.served = Counter("fincoach_scorer_served_total", "Recommendations served, by the tier that answered",
                              ["tier"], registry=self.registry)
        self.fallbacks = Counter("fincoach_scorer_fallbacks_total", "Answers not given by the first tier asked",
                                 ["tier"], registry=self.registry)
        self.model = Gauge("fincoach_scorer_model_info", "1 for each model version in service, by tier",
                           ["tier", "model_version"], registry=self.registry)
        self.cache = Counter("fincoach_scorer_cache_total", "Cache lookups by kind and result",
                             ["kind", "result"], registry=self.registry)
        self.log_pending = Gauge("fincoach_scorer_log_pending", "Served recommendations not yet written",
                                 registry=self.registry)

    def set_models(self, tiers: dict[str, str | None]) -> None:
        """Model versions in service by tier (replaces the previous set)."""
        self.model.clear()
        for tier, version in tiers.items():
            if version:
                self.model.labels(tier, version).set(1)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def outcome(status: int) -> str:
    """ok | client_error | server_error from an HTTP status."""
    return "ok" if status < 400 else "client_error" if status < 500 else "server_error"


class MetricsMiddleware:
    """Pure ASGI middleware timing every request by its route template (not the raw path)."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ScorerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, outcome(status["code"])).inc()
