"""Firing many schedules of a partition: one listing per pass, one statement per alike advance."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from services.scheduler.domain import CatchUp, SlotPlan, plan_slots
from services.scheduler.service import SchedulerService
from services.scheduler.store import MongoSchedulerRepository
from services.scheduler.store.documents import ScheduleDoc
from shared.contracts import Envelope
from shared.contracts.jobs import EveryRule, RecurringSchedule
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.support.commands import Commands
from tests.support.scheduler_harness import snapshot

NOW = datetime(2026, 3, 1, tzinfo=UTC)
AT = NOW + timedelta(minutes=1, seconds=5)  # the first slot (NOW + 1 min) is due


@pytest.fixture
async def repo(mongo: MongoClient, settings: CommonSettings) -> AsyncIterator[MongoSchedulerRepository]:
    repository = MongoSchedulerRepository(mongo, settings.database("scheduler"), partitions=1)
    await repository.ensure_indexes()
    yield repository
    await mongo.drop_database(settings.database("scheduler"))


def planner(doc: ScheduleDoc) -> SlotPlan:
    return plan_slots(doc.schedule, doc.next_slot, AT, CatchUp())


async def add_jobs(repo: MongoSchedulerRepository, job_ids: range, minutes: int = 1) -> None:
    schedule = RecurringSchedule(rule=EveryRule(minutes=minutes))
    for job_id in job_ids:
        await repo.apply_job(snapshot(job_id, schedule), True, NOW)


async def fire_pass(repo: MongoSchedulerRepository, limit: int) -> list[str]:
    """What the ticker does for one partition and pass: batches until one comes back short."""
    run_ids: list[str] = []
    while True:
        batch = await repo.fire_due(0, int(AT.timestamp()), limit, planner, AT, AT)
        run_ids += [m.data.run_id for m in batch.result.messages]  # type: ignore[attr-defined]
        assert batch.singles == []
        if batch.seen < limit or not batch.result.outcomes:
            return run_ids


async def test_each_schedule_of_a_batch_gets_the_run_number_after_its_own(
    repo: MongoSchedulerRepository,
) -> None:
    """One statement advances the batch; each document's run id still counts from its own last run."""
    await add_jobs(repo, range(1, 7))
    for job_id in range(1, 7):  # runs already counted: job 1 none, job 2 one, …
        await repo.schedules.update_one({"_id": f"job:{job_id}"}, {"$set": {"last_run": job_id - 1}})
    run_ids = await fire_pass(repo, limit=100)
    assert sorted(run_ids) == [f"{j}.{j}" for j in range(1, 7)]
    async for doc in repo.schedules.find({}):
        job_id = doc["owner_id"]
        assert (doc["running"], doc["last_run"]) == (f"{job_id}.{job_id}", job_id)
        assert doc["next_slot"] == NOW + timedelta(minutes=2) and doc["previous_run"] == NOW + timedelta(
            minutes=1
        )
        assert doc["due"] == int((NOW + timedelta(minutes=2)).timestamp())
        [entry] = await repo.ledger_entries(doc["_id"])
        assert (entry["outcome"], entry["run_id"]) == ("requested", f"{job_id}.{job_id}")


async def test_a_pass_fires_every_due_schedule_once_over_many_batches(repo: MongoSchedulerRepository) -> None:
    await add_jobs(repo, range(1, 24))
    run_ids = await fire_pass(repo, limit=5)
    assert sorted(run_ids) == sorted(f"{j}.1" for j in range(1, 24))
    assert await fire_pass(repo, limit=5) == []  # nothing due any more
    assert await repo.db.ledger.count_documents({}) == 23


async def test_a_schedule_fired_elsewhere_after_the_listing_is_not_fired_again(
    repo: MongoSchedulerRepository,
) -> None:
    """The pass lists the due ids once; the transaction re-reads them and leaves out one advanced meanwhile."""
    await add_jobs(repo, range(1, 11))
    cutoff = int(AT.timestamp())
    first = await repo.fire_due(0, cutoff, 4, planner, AT, AT)  # lists all 10, fires 4
    assert len(first.result.messages) == 4 and first.seen == 4
    fired = {m.data.run_id.split(".")[0] for m in first.result.messages}  # type: ignore[attr-defined]
    other = next(f"job:{j}" for j in range(1, 11) if str(j) not in fired)
    elsewhere = await repo.fire_one(other, planner, AT, AT)  # another replica fired it meanwhile
    assert len(elsewhere.messages) == 1
    rest = await fire_pass(repo, limit=4)
    assert len(rest) == 5 and other.removeprefix("job:") + ".1" not in rest
    assert await repo.db.ledger.count_documents({}) == 10


async def test_schedules_advanced_differently_in_one_batch_each_get_their_own_next_slot(
    repo: MongoSchedulerRepository,
) -> None:
    await add_jobs(repo, range(1, 4), minutes=1)
    await add_jobs(repo, range(4, 7), minutes=1)
    for job_id in range(4, 7):  # another rule, the same first slot: its next is the next 3-minute mark
        await repo.schedules.update_one(
            {"_id": f"job:{job_id}"},
            {"$set": {"schedule": RecurringSchedule(rule=EveryRule(minutes=3)).model_dump(mode="json")}},
        )
    await repo.schedules.update_one({"_id": "job:6"}, {"$set": {"running": "6.9"}})  # overlaps: no run
    run_ids = await fire_pass(repo, limit=100)
    assert sorted(run_ids) == ["1.1", "2.1", "3.1", "4.1", "5.1"]
    docs = {d["owner_id"]: d async for d in repo.schedules.find({})}
    assert {j: docs[j]["next_slot"] - NOW for j in docs} == {
        1: timedelta(minutes=2), 2: timedelta(minutes=2), 3: timedelta(minutes=2),
        4: timedelta(minutes=3), 5: timedelta(minutes=3), 6: timedelta(minutes=3),
    }  # fmt: skip
    assert (docs[6]["running"], docs[6]["last_run"], docs[6]["previous_run"]) == ("6.9", 0, None)
    assert [e["outcome"] for e in await repo.ledger_entries("job:6")] == ["overlap"]


async def test_a_batch_with_a_slot_already_recorded_is_refused_and_left_to_fire_one_by_one(
    repo: MongoSchedulerRepository,
) -> None:
    """The ledger decides: a slot recorded already refuses the batch; nothing of it is written."""
    await add_jobs(repo, range(1, 5))
    slot = NOW + timedelta(minutes=1)
    await repo.db.ledger.insert_one(
        {"_id": f"job:2|{slot.isoformat()}", "owner": "job:2", "slot": slot, "outcome": "requested"}
    )
    batch = await repo.fire_due(0, int(AT.timestamp()), 100, planner, AT, AT)
    assert batch.result.messages == [] and sorted(batch.singles) == [f"job:{j}" for j in range(1, 5)]
    assert await repo.db.ledger.count_documents({}) == 1
    singles = [await repo.fire_one(key, planner, AT, AT) for key in batch.singles]
    assert sorted(m.data.run_id for r in singles for m in r.messages) == ["1.1", "3.1", "4.1"]  # type: ignore[attr-defined]
    assert await repo.db.ledger.count_documents({}) == 4


class Confirmed:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def publish(self, message: Envelope) -> None:
        self.sent.append(message.id)


async def test_a_batch_and_its_publish_cost_one_outbox_insert_and_one_outbox_update_whatever_its_size(
    mongo_url: str, settings: CommonSettings
) -> None:
    """Issue #15: the outbox shared with the catalog adds no write to a fire (bench/scheduler_scale.py)."""
    listener = Commands()
    client: MongoClient = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    repo = MongoSchedulerRepository(client, settings.database("scheduler"), partitions=1)
    try:
        await repo.ensure_indexes()
        await add_jobs(repo, range(1, 51))
        publisher = Confirmed()
        service = SchedulerService(repo, publisher, lambda: AT, wall=lambda: AT)
        listener.take()
        batch = await repo.fire_due(0, int(AT.timestamp()), 100, planner, AT, AT)
        assert await service.publish(batch.result)
        assert listener.take() == Counter(
            {("find", "schedule_state"): 2, ("insert", "fire_ledger"): 1, ("update", "schedule_state"): 1,
             ("insert", "outbox"): 1, ("commitTransaction", ""): 1, ("update", "outbox"): 1}
        )  # fmt: skip
        assert sorted(publisher.sent) == sorted(f"run-requested-{j}.1" for j in range(1, 51))
        assert await repo.outbox.collection.count_documents({"published": False}) == 0
    finally:
        await client.drop_database(settings.database("scheduler"))
        await client.close()
