"""A fired schedule slot starts a trace of its own per run (tracing on): the fire batch's one outbox entry
stores each RunRequested's `traceparent`, a `schedule slot` root span naming the run, and the service
publishes each message in its own trace — one trace per run, not one per tick."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.scheduler.service import SchedulerService
from services.scheduler.store import MongoSchedulerRepository
from shared import tracing
from shared.contracts import Envelope
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.integration.test_scheduler_fire_batch import AT, add_jobs, planner
from tests.support.tracing import spans  # noqa: F401 - the fixture


@pytest.fixture
async def repo(mongo: MongoClient, settings: CommonSettings) -> AsyncIterator[MongoSchedulerRepository]:
    repository = MongoSchedulerRepository(mongo, settings.database("scheduler"), partitions=1)
    await repository.ensure_indexes()
    yield repository
    await mongo.drop_database(settings.database("scheduler"))


class TracedPublisher:
    def __init__(self) -> None:
        self.published: dict[str, str | None] = {}

    async def publish(self, message: Envelope) -> None:
        self.published[message.data.run_id] = tracing.current_traceparent()  # type: ignore[attr-defined]


async def test_each_fired_slot_is_the_root_of_its_runs_trace(
    repo: MongoSchedulerRepository,
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    await add_jobs(repo, range(1, 4))
    batch = await repo.fire_due(0, int(AT.timestamp()), 10, planner, AT, AT)
    run_ids = [m.data.run_id for m in batch.result.messages]  # type: ignore[attr-defined]
    assert sorted(run_ids) == ["1.1", "2.1", "3.1"]

    roots = {
        s.attributes["connect.run_id"]: s for s in spans.get_finished_spans() if s.name == "schedule slot"
    }
    assert sorted(roots) == sorted(run_ids)
    assert all(s.parent is None for s in roots.values())
    assert len({s.context.trace_id for s in roots.values()}) == 3  # a trace per run

    stored = await repo.outbox.collection.find_one({"_id": batch.result.outbox_id})
    assert stored is not None and len(stored["traceparents"]) == 3
    publisher = TracedPublisher()
    assert await SchedulerService(repo, publisher).publish(batch.result)  # type: ignore[arg-type]
    for run_id, traceparent in publisher.published.items():
        assert traceparent is not None
        assert traceparent.split("-")[1] == format(roots[run_id].context.trace_id, "032x")
        assert traceparent.split("-")[2] == format(roots[run_id].context.span_id, "016x")
