"""Catalog app factory: wiring only."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from services.catalog.adapters.audience_schema import MongoAudienceSchema
from services.catalog.adapters.idempotency_records import MongoIdempotencyRecords
from services.catalog.adapters.pgp_keys import GpgKeyReader
from services.catalog.adapters.read_models import MongoReadModels
from services.catalog.adapters.repository import MongoCatalogRepository
from services.catalog.adapters.runs_read_model import MongoRunsReadModel
from services.catalog.adapters.sftp_probe import AsyncsshProbe
from services.catalog.api import audit as audit_api
from services.catalog.api import groups as groups_api
from services.catalog.api import jobs as jobs_api
from services.catalog.api import keys as keys_api
from services.catalog.api import notifications as notifications_api
from services.catalog.api import resources, runs
from services.catalog.api import tokens as tokens_api
from services.catalog.api.errors import error_response, install_error_handlers
from services.catalog.api.idempotency import install_idempotency
from services.catalog.api.openapi import install_openapi, operation_id
from services.catalog.channels import NotificationChannels
from services.catalog.config import CatalogSettings
from services.catalog.console.routes import install_console
from services.catalog.groups import GroupService
from services.catalog.idempotency import IdempotentRequests
from services.catalog.jobs import JobService
from services.catalog.keys import PgpKeys
from services.catalog.runs import RunsService
from services.catalog.service import CatalogService
from services.catalog.subscribers import register_subscribers
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
from shared.http_metrics import HttpMetricsMiddleware
from shared.metrics import http_metrics, outbox_backlog
from shared.runtime import ServiceRuntime, create_http_app
from shared.secrets import secret_box
from shared.settings import CommonSettings
from shared.tasks import PeriodicTask


def build_app(common: CommonSettings | None = None, settings: CatalogSettings | None = None) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or CatalogSettings()
    runtime = ServiceRuntime.create("catalog", common, prefetch=settings.prefetch)
    repo = MongoCatalogRepository(
        runtime.mongo, runtime.db_name, outbox_retention=timedelta(seconds=settings.outbox_retention_seconds)
    )
    box = secret_box(common)
    service = CatalogService(
        repo,
        box,
        audience=MongoAudienceSchema(runtime.mongo, common.audience_database),
        probe=AsyncsshProbe(),
        token_cache_seconds=settings.token_cache_seconds,
        failure_limit=settings.auth_failure_limit,
        failure_window=settings.auth_failure_window,
    )
    reads = MongoReadModels(runtime.mongo, common.database("scheduler"), common.database("logsink"))
    timeout = settings.run_request_timeout
    jobs = JobService(repo, reads, runtime.publisher, run_request_timeout=timeout)
    groups = GroupService(repo, reads, runtime.publisher, run_request_timeout=timeout)
    register_subscribers(runtime, jobs, groups)
    backlog = outbox_backlog(runtime.metrics.registry)

    async def relay_pass() -> None:
        await repo.outbox.relay(runtime.publisher)
        backlog.set(await repo.outbox.backlog())

    relay = PeriodicTask("outbox-relay", settings.outbox_relay_interval, relay_pass)
    runtime.on_start += [repo.ensure_indexes, relay.start]
    runtime.on_drain.append(relay.stop)
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
        generate_unique_id_function=operation_id,
    )
    app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics(runtime.metrics.registry))
    app.state.catalog = service
    app.state.jobs = jobs
    app.state.groups = groups
    app.state.channels = NotificationChannels(repo, box)
    app.state.keys = PgpKeys(repo, box, GpgKeyReader())
    runs_read = MongoRunsReadModel(runtime.mongo, common.database("logsink"), common.database("executor"))
    app.state.runs = RunsService(runs_read)
    routers = (
        resources.router,
        jobs_api.router,
        groups_api.router,
        runs.router,
        notifications_api.router,
        keys_api.router,
        tokens_api.router,
        audit_api.router,
    )
    for router in routers:
        app.include_router(router)
    console = install_console(app, runtime.mongo, runtime.db_name)  # the web console at /
    runtime.on_start.append(console.ensure_indexes)
    install_error_handlers(app)
    install_openapi(app, routers)
    idempotency_records = MongoIdempotencyRecords(runtime.mongo, runtime.db_name, box)
    runtime.on_start.append(idempotency_records.ensure_indexes)
    # Inside the body size limit; its OpenAPI additions wrap the document install_openapi describes.
    install_idempotency(app, IdempotentRequests(idempotency_records))
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
