"""HTTP metrics of the REST API: requests by route template, method and status; latency by route and method.

A plain ASGI middleware (no BaseHTTPMiddleware: server-sent events stream through untouched). The route
label is the matched route's template (`/api/v1/jobs/{job_id}/run`), never the raw path, so its values
are bounded; a request no route matched counts as `<unmatched>`.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import HttpMetrics

UNMATCHED = "<unmatched>"
NOT_COUNTED = frozenset({"/metrics", "/healthz", "/readyz"})  # scrapes and probes


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NOT_COUNTED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what a request that raised before answering is counted as

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route, method = route_template(scope), scope["method"]
            self.metrics.requests_total.labels(route, method, str(status)).inc()
            self.metrics.request_duration_seconds.labels(route, method).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    route: Any = scope.get("route")  # set by the router on the scope it matched
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED
