"""Scheduler app factory: wiring only (tests build it with their own settings)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.scheduler.clock import scaled_clock, utc_now
from services.scheduler.config import SchedulerSettings
from services.scheduler.domain import CatchUp, Outcome
from services.scheduler.service import SchedulerService
from services.scheduler.store import MongoSchedulerRepository
from services.scheduler.subscribers import register_subscribers
from services.scheduler.ticker import Ticker
from shared.contracts import Expire, GroupRunFinished, GroupRunStarted, RunRequested, StopRun, TriggerFired
from shared.metrics import outbox_backlog, scheduler_metrics
from shared.runtime import ServiceRuntime, create_http_app
from shared.settings import CommonSettings
from shared.tasks import PeriodicTask

TRIGGERS_CHANNEL = """Public: other systems publish `TriggerFired` here to start on-event jobs and groups
(docs/scheduling.md, "Triggers"). The topic exchange `connect.triggers` (durable; its name takes the
`CONNECT_AMQP_PREFIX` of the installation, empty by default). Routing key: the trigger's name, exactly
(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`, the `trigger` of an `on_event` schedule). Persistent delivery
(delivery mode 2), `mandatory` and publisher confirms recommended. Body: a CloudEvent, structured mode
(content type `application/cloudevents+json`, the whole envelope as JSON) or binary mode (the attributes
as `cloudEvents_*` application properties, the body the `data` as `application/json`)."""


def build_app(common: CommonSettings | None = None, settings: SchedulerSettings | None = None) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or SchedulerSettings()
    runtime = ServiceRuntime.create("scheduler", common, prefetch=settings.prefetch)
    repo = MongoSchedulerRepository(
        runtime.mongo, runtime.db_name, partitions=settings.partitions,
        lease_seconds=settings.partition_lease_seconds,
        transaction_wait_seconds=settings.transaction_wait_seconds,
        outbox_retention=timedelta(seconds=settings.outbox_retention_seconds),
    )  # fmt: skip
    clock = scaled_clock(settings.clock_origin, settings.clock_scale)
    service = SchedulerService(
        repo, runtime.publisher, clock, wall=utc_now,
        metrics=scheduler_metrics(runtime.metrics.registry, [outcome.value for outcome in Outcome]),
    )  # fmt: skip
    register_subscribers(runtime, service)
    runtime.documents_publishing(RunRequested, GroupRunStarted, GroupRunFinished, Expire, StopRun)
    runtime.documents_published_by_others(
        TriggerFired, routing_key="{trigger}", title="connect.triggers", description=TRIGGERS_CHANNEL
    )

    max_age = settings.catch_up_max_age_seconds
    ticker = Ticker(
        service,
        repo,
        instance=settings.instance_id,
        catch_up=CatchUp(
            settings.catch_up_slots,
            timedelta(seconds=max_age) if max_age else None,
            grace=timedelta(seconds=settings.catch_up_grace_seconds),
        ),
        batch=settings.fire_batch,
        concurrency=settings.fire_concurrency,
        lease_seconds=settings.partition_lease_seconds,
        expire_resend=timedelta(seconds=settings.expire_resend_seconds),
    )
    relay_after = timedelta(seconds=settings.outbox_relay_after)
    backlog = outbox_backlog(runtime.metrics.registry)

    async def relay_pass() -> None:
        await service.relay_outbox(relay_after)
        backlog.set(await repo.outbox.backlog())

    relay = PeriodicTask("outbox-relay", settings.outbox_relay_interval, relay_pass)
    ticks = PeriodicTask("scheduler-tick", settings.tick_seconds, ticker.tick)
    runtime.on_start += [repo.ensure_indexes, relay.start, ticks.start]
    runtime.on_drain += [ticks.stop, relay.stop, ticker.stop, service.settle]
    app = create_http_app(runtime, title="Connect scheduler")
    app.state.scheduler = service
    app.state.ticker = ticker
    return app
