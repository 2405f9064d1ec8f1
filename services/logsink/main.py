"""Logsink app factory: wiring only."""

from __future__ import annotations

from fastapi import FastAPI

from services.logsink.config import LogsinkSettings
from services.logsink.repository import MongoRunRecords
from services.logsink.service import LogsinkService
from services.logsink.subscribers import register_subscribers
from shared.runtime import ServiceRuntime, create_http_app
from shared.settings import CommonSettings


def build_app(common: CommonSettings | None = None, settings: LogsinkSettings | None = None) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or LogsinkSettings()
    runtime = ServiceRuntime.create("logsink", common, prefetch=settings.prefetch)
    records = MongoRunRecords(runtime.mongo, runtime.db_name)
    register_subscribers(runtime, LogsinkService(records))
    runtime.on_start.append(records.ensure_indexes)
    return create_http_app(runtime, title="Connect logsink")
