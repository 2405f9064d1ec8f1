"""Scheduler app factory: wiring only (tests build it with their own settings)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.scheduler.config import SchedulerSettings
from services.scheduler.repository import MongoSchedulerRepository
from services.scheduler.service import SchedulerService
from services.scheduler.subscribers import register_subscribers
from shared.contracts import Expire, GroupRunFinished, GroupRunStarted, RunRequested
from shared.runtime import ServiceRuntime, create_http_app
from shared.settings import CommonSettings
from shared.tasks import PeriodicTask


def build_app(common: CommonSettings | None = None, settings: SchedulerSettings | None = None) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or SchedulerSettings()
    runtime = ServiceRuntime.create("scheduler", common, prefetch=settings.prefetch)
    repo = MongoSchedulerRepository(runtime.mongo, runtime.db_name)
    service = SchedulerService(repo, runtime.publisher)
    register_subscribers(runtime, service)
    runtime.documents_publishing(RunRequested, GroupRunStarted, GroupRunFinished, Expire)

    relay_after = timedelta(seconds=settings.outbox_relay_after)
    relay = PeriodicTask(
        "outbox-relay", settings.outbox_relay_interval, lambda: service.relay_outbox(relay_after)
    )
    runtime.on_start += [repo.ensure_indexes, relay.start]
    runtime.on_drain.append(relay.stop)
    return create_http_app(runtime, title="Connect scheduler")
