"""HTTP request metrics for Prometheus, on the app's own registry (api/metrics.py).

Requests are labelled by route template (`/orders/{order_id}`), never by the path a client
sent, so that the series stay few; a path no route matches is `unmatched`.
"""

from __future__ import annotations

import time

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"


class RequestMetrics:
    def __init__(self) -> None:
        self.requests = Counter(
            "geosaga_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=None,
        )
        self.duration = Histogram(
            "geosaga_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            ["method", "route"],
            registry=None,
        )

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.requests)
        registry.register(self.duration)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request; names the request's span by its route too."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"]
            # Routing writes the matched route into the scope this middleware passed on.
            route = getattr(scope.get("route"), "path", UNMATCHED)
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)
            span = trace.get_current_span()
            if route != UNMATCHED and span.is_recording():
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
