"""Prometheus metrics and JSON access logs, as one ASGI middleware.

Routes are recorded by their template (``/v1/batches/{batch_id}``), never the concrete path,
so ids do not explode the label space. Access log lines carry the tenant and key id, never
the key or any request or file content. The middleware also adds the ``x-ratelimit-*``
headers that authentication left in the request state to every answer.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmbatch.api.timefmt import now_rfc3339

access_log = logging.getLogger("llmbatch.gateway.access")

_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        # One registry per app: tests build several apps in one process.
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmbatch_gateway_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llmbatch_gateway_request_duration_seconds",
            "Time to answer a request (until the last byte).",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "llmbatch_gateway_rate_limited",
            "Requests refused with 429 by the per-key rate limit.",
            ["tier"],
            registry=self.registry,
        )
        self.uploaded_bytes = Counter(
            "llmbatch_gateway_uploaded_bytes",
            "Bytes of accepted file uploads.",
            registry=self.registry,
        )


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra: dict[str, str] = state.get("ratelimit_headers") or {}
                if extra:
                    headers = list(message.get("headers", []))
                    present = {name.lower() for name, _ in headers}
                    for name, value in extra.items():
                        if name.encode() not in present:
                            headers.append((name.encode(), value.encode()))
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            principal = state.get("principal")
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    json.dumps(
                        {
                            "ts": now_rfc3339(),
                            "method": method,
                            "path": scope.get("path"),
                            "route": route,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 2),
                            "tenant": getattr(principal, "tenant", None),
                            "key_id": getattr(principal, "key_id", None),
                            "client": (scope.get("client") or [None])[0],
                        }
                    )
                )
