"""Harness for the scheduler's integration tests: the scheduler in-process against the real broker and
database, and a test side that plays the catalog (events, commands) and the executors (it consumes
`executor.runs` and publishes `RunFinished` itself), so the scheduler is tested honestly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from faststream.rabbit import RabbitBroker, RabbitQueue

from services.scheduler.config import SchedulerSettings
from services.scheduler.main import build_app
from services.scheduler.service import SchedulerService
from shared.contracts import (
    Envelope,
    Expire,
    GroupRunFinished,
    GroupRunStarted,
    JobChanged,
    JobSnapshot,
    RunFinished,
    RunJobReply,
    RunRequested,
    StopRun,
    TriggerFired,
)
from shared.contracts.catalog import JobChangedData
from shared.contracts.cloudevents import STRUCTURED_CONTENT_TYPE
from shared.contracts.jobs import OnDemandSchedule, Schedule
from shared.contracts.runs import RunCounts, RunFinishedData, RunStatus
from shared.messaging import Publisher, create_broker
from shared.metrics import create_metrics
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.integration.test_messaging import run_requested
from tests.support.waiting import eventually


def snapshot(job_id: int, schedule: Schedule | None = None, **extra: Any) -> JobSnapshot:
    base = run_requested().data.job
    return base.model_copy(
        update={
            "job_id": job_id,
            "name": f"job-{job_id}",
            "schedule": schedule or OnDemandSchedule(),
            **extra,
        }
    )


def job_changed(job: JobSnapshot, active: bool = True) -> JobChanged:
    return JobChanged(source="test", subject=str(job.job_id), data=JobChangedData(job=job, active=active))


def finished(job_id: int, run_id: str, status: RunStatus = RunStatus.SUCCEEDED) -> RunFinished:
    now = datetime.now(UTC)
    return RunFinished(
        source="test",
        data=RunFinishedData(
            run_id=run_id, job_id=job_id, status=status, counts=RunCounts(), started_at=now, finished_at=now
        ),
    )


@dataclass
class Harness:
    settings: CommonSettings
    topology: Topology
    broker: RabbitBroker
    publisher: Publisher
    app: FastAPI
    mongo: MongoClient
    requested: list[RunRequested] = field(default_factory=list)
    group_events: list[Envelope] = field(default_factory=list)
    expires: list[Expire] = field(default_factory=list)
    stops: list[StopRun] = field(default_factory=list)

    @property
    def service(self) -> SchedulerService:
        service: SchedulerService = self.app.state.scheduler
        return service

    @property
    def db(self) -> Any:
        return self.mongo[self.settings.database("scheduler")]

    async def publish(self, message: Envelope) -> None:
        await self.publisher.publish(message)

    async def publish_trigger(self, message: TriggerFired) -> None:
        """As another system would: on `connect.triggers`, routing key = trigger name."""
        await self.broker.publish(
            message.model_dump_json(), exchange=self.topology.triggers, routing_key=message.data.name,
            persist=True, content_type=STRUCTURED_CONTENT_TYPE, mandatory=True,
        )  # fmt: skip

    async def request(self, message: Envelope) -> RunJobReply:
        return RunJobReply.model_validate(await self.publisher.request(message, timeout=20))

    async def finish(self, job_id: int, run_id: str, status: RunStatus = RunStatus.SUCCEEDED) -> None:
        await self.publish(finished(job_id, run_id, status))

    def runs_of(self, job_id: int) -> list[RunRequested]:
        return [m for m in self.requested if m.data.job.job_id == job_id]

    async def schedule_doc(self, key: str) -> dict[str, Any] | None:
        doc: dict[str, Any] | None = await self.db["schedule_state"].find_one({"_id": key})
        return doc

    async def ledger(self, owner: str) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await self.db["fire_ledger"].find({"owner": owner}).to_list(None)
        return sorted(docs, key=lambda d: str(d["slot"]))

    async def until_known(self, key: str, timeout: float = 15) -> dict[str, Any]:
        return await eventually(
            lambda: self.schedule_doc(key),
            until=lambda doc: doc.get("known"),
            what=f"{key} known to the scheduler",
            timeout=timeout,
        )


@asynccontextmanager
async def running_scheduler(
    settings: CommonSettings, mongo: MongoClient, **scheduler: Any
) -> AsyncIterator[Harness]:
    options = {"tick_seconds": 0.1, "outbox_relay_interval": 0.5, "http_port": 0} | scheduler
    app = build_app(settings, SchedulerSettings.model_validate(options))
    topology = Topology(prefix=settings.amqp_prefix)
    broker = create_broker(
        settings.amqp_url, service="test", registry=create_metrics("test").registry, prefetch=100,
        graceful_timeout=5,
    )  # fmt: skip
    harness = Harness(settings, topology, broker, Publisher(broker, topology), app, mongo)

    @broker.subscriber(topology.executor_runs)
    async def executor(message: RunRequested) -> None:
        harness.requested.append(message)

    events_queue = RabbitQueue(topology.name("test.scheduler-out"), auto_delete=True, routing_key="group.#")

    @broker.subscriber(events_queue, topology.events)
    async def group_event(body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == GroupRunStarted.model_fields["type"].default:
            harness.group_events.append(GroupRunStarted.model_validate(body))
        elif kind == GroupRunFinished.model_fields["type"].default:
            harness.group_events.append(GroupRunFinished.model_validate(body))

    @broker.subscriber(topology.catalog_commands)
    async def catalog(message: Expire) -> None:
        harness.expires.append(message)

    @broker.subscriber(RabbitQueue(topology.name("test.control"), auto_delete=True), topology.control)
    async def control(message: StopRun) -> None:
        harness.stops.append(message)

    async with app.router.lifespan_context(app):
        await broker.start()
        try:
            yield harness
        finally:
            await broker.stop()


@pytest.fixture
async def scheduler(
    settings: CommonSettings, mongo: MongoClient, topology: Topology
) -> AsyncIterator[Harness]:
    async with running_scheduler(settings, mongo) as harness:
        yield harness
    await mongo.drop_database(settings.database("scheduler"))
