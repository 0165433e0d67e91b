"""Prometheus metrics of one server process, on a registry of its own (served at `GET /metrics`)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clinicflow.api.middleware import HttpMiddleware

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The service's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "clinicflow_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "clinicflow_http_request_seconds",
            "HTTP request latency (event streams excluded).",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.runs_created = Counter("clinicflow_runs_created", "Runs created.", ["workflow"], registry=r)
        self.runs_finished = Counter(
            "clinicflow_runs_finished", "Runs finished, by final status.", ["workflow", "status"], registry=r
        )
        self.run_seconds = Histogram(
            "clinicflow_run_seconds",
            "Time from a run's creation to its end.",
            ["workflow"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.runs_executing = Gauge(
            "clinicflow_runs_executing", "Runs executing in this process.", registry=r
        )
        self.runs_waiting = Gauge("clinicflow_runs_queued", "Runs waiting for a worker here.", registry=r)
        self.runs_resumed = Counter(
            "clinicflow_runs_resumed", "Runs resumed after an interruption.", registry=r
        )
        self.model_calls = Counter("clinicflow_model_calls", "Model calls.", ["workflow"], registry=r)
        self.model_tokens = Counter(
            "clinicflow_model_tokens", "Model tokens.", ["workflow", "direction"], registry=r
        )
        self.tool_calls = Counter(
            "clinicflow_tool_calls", "Tool calls by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.fhir_requests = Counter(
            "clinicflow_fhir_requests", "Outbound FHIR requests.", ["method", "status"], registry=r
        )
        self.approvals = Counter("clinicflow_approvals", "Approval decisions.", ["action"], registry=r)
        self.auth_failures = Counter(
            "clinicflow_auth_failures", "Requests refused by authentication or scope.", ["reason"], registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsMiddleware(HttpMiddleware):
    """Counts requests by route template (not raw path, so run ids do not explode the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            if not template.endswith("/events"):
                self.metrics.http_latency.labels(method, template).observe(time.perf_counter() - started)
