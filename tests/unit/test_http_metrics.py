"""The REST API's HTTP metrics (shared/http_metrics.py): by route template, method and status, latency by
route and method; probes and scrapes not counted; a raising handler counted as a 500."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from shared.http_metrics import HttpMetricsMiddleware
from shared.metrics import http_metrics


def app_with_metrics(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI()
    router = APIRouter(prefix="/api/v1")

    @router.post("/jobs/{job_id}/run", status_code=202)
    async def run(job_id: int) -> dict[str, int]:
        return {"job_id": job_id}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(router)
    app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics(registry))
    return app


async def test_requests_are_counted_by_route_template_method_and_status() -> None:
    registry = CollectorRegistry()
    transport = httpx.ASGITransport(app=app_with_metrics(registry), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for job_id in (5, 6):
            assert (await client.post(f"/api/v1/jobs/{job_id}/run")).status_code == 202
        assert (await client.post("/api/v1/jobs/x/run")).status_code == 422
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get("/api/v1/boom")).status_code == 500
        assert (await client.get("/healthz")).status_code == 200

    def count(route: str, method: str, status: str) -> float | None:
        labels = {"route": route, "method": method, "status": status}
        return registry.get_sample_value("connect_http_requests_total", labels)

    assert count("/api/v1/jobs/{job_id}/run", "POST", "202") == 2  # one series for every job id
    assert count("/api/v1/jobs/{job_id}/run", "POST", "422") == 1
    assert count("<unmatched>", "GET", "404") == 1
    assert count("/api/v1/boom", "GET", "500") == 1
    assert count("/healthz", "GET", "200") is None  # probes are not API traffic
    latency = {"route": "/api/v1/jobs/{job_id}/run", "method": "POST"}
    assert registry.get_sample_value("connect_http_request_duration_seconds_count", latency) == 3
