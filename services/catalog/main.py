"""Catalog app factory: wiring only."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from services.catalog.api import resources, runs
from services.catalog.api.errors import error_response, install_error_handlers
from services.catalog.config import CatalogSettings
from services.catalog.repository import MongoCatalogRepository, MongoRunsReadModel
from services.catalog.service import CatalogService
from shared.contracts import (
    GroupChanged,
    GroupDeleted,
    JobChanged,
    JobDeleted,
    RunGroup,
    RunJob,
    StopGroupRun,
    StopRun,
)
from shared.runtime import ServiceRuntime, create_http_app
from shared.secrets import secret_box
from shared.settings import CommonSettings


def build_app(common: CommonSettings | None = None, settings: CatalogSettings | None = None) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or CatalogSettings()
    runtime = ServiceRuntime.create("catalog", common, prefetch=settings.prefetch)
    repo = MongoCatalogRepository(runtime.mongo, runtime.db_name)
    service = CatalogService(
        repo,
        MongoRunsReadModel(runtime.mongo, common.database("logsink")),
        runtime.publisher,
        secret_box(common),
        run_request_timeout=settings.run_request_timeout,
    )
    runtime.on_start.append(repo.ensure_indexes)
    runtime.documents_publishing(
        RunJob, RunGroup, StopRun, StopGroupRun, JobChanged, JobDeleted, GroupChanged, GroupDeleted
    )
    app = create_http_app(
        runtime,
        title="Connect",
        description="Import and export audience data on schedules.",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.catalog = service
    app.include_router(resources.router)
    app.include_router(runs.router)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


class BodySizeLimit:
    """Refuses request bodies larger than `max_bytes` (413) before they are read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                message = f"request body larger than {self.max_bytes} bytes"
                await error_response(413, "payload_too_large", message)(scope, receive, send)
                return
        await self.app(scope, receive, send)
