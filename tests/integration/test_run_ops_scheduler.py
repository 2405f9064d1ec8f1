"""Run now without reading the job's schedule document: the replica's known run counter, checked by the write.

A replica that allocated a job's last run knows its counter and takes the next run with one guarded
write (no read); whenever the guess is stale (another replica or a scheduled fire ran the job since),
the job is running or it has expired, the guard fails and the answer is the one the read gives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient

from services.scheduler.domain import build_run_requested
from services.scheduler.errors import CommandExpired, JobAlreadyRunning, JobExpired
from services.scheduler.store import MongoSchedulerRepository
from shared.contracts.runs import RunStatus
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.integration.test_scheduler_store import NOW, allocate, command_for, request_for
from tests.support.commands import Commands


@pytest.fixture
async def replicas(
    mongo: MongoClient, settings: CommonSettings
) -> AsyncIterator[tuple[MongoSchedulerRepository, MongoSchedulerRepository, Commands]]:
    """Two scheduler replicas on one database; the first one's commands are counted."""
    commands = Commands()
    assert settings.mongo_url
    counted: MongoClient = AsyncMongoClient(settings.mongo_url, tz_aware=True, event_listeners=[commands])
    name = settings.database("scheduler")
    first, second = MongoSchedulerRepository(counted, name), MongoSchedulerRepository(mongo, name)
    await first.ensure_indexes()
    yield first, second, commands
    await mongo.drop_database(name)
    await counted.close()


async def finish(repo: MongoSchedulerRepository, job_id: int, run_id: str) -> None:
    await repo.run_finished(job_id, run_id, RunStatus.SUCCEEDED, NOW, NOW)


async def test_a_known_counter_takes_the_next_run_with_one_write_and_no_read(
    replicas: tuple[MongoSchedulerRepository, MongoSchedulerRepository, Commands],
) -> None:
    first, _, commands = replicas
    assert (await allocate(first, command_for(300))).data.run_id == "300.1"  # unknown: read
    await finish(first, 300, "300.1")
    commands.take()
    assert (await allocate(first, command_for(300))).data.run_id == "300.2"
    seen = commands.take()
    assert seen[("find", "schedule_state")] == 0, seen
    assert seen[("update", "schedule_state")] == 1 and seen[("insert", "outbox")] == 1, seen
    doc = await first.schedules.find_one({"_id": "job:300"})
    assert doc is not None and doc["running"] == "300.2" and doc["last_run"] == 2


async def test_a_stale_counter_costs_a_read_and_never_a_wrong_run_id(
    replicas: tuple[MongoSchedulerRepository, MongoSchedulerRepository, Commands],
) -> None:
    first, second, commands = replicas
    await allocate(first, command_for(301))
    await finish(first, 301, "301.1")
    assert (await allocate(second, command_for(301))).data.run_id == "301.2"  # the other replica
    await finish(second, 301, "301.2")
    commands.take()
    assert (await allocate(first, command_for(301))).data.run_id == "301.3"
    seen = commands.take()
    assert seen[("find", "schedule_state")] == 1, seen  # the guard failed: read, then decided as before


async def test_a_known_counter_still_refuses_a_running_or_expired_job_and_a_late_command(
    replicas: tuple[MongoSchedulerRepository, MongoSchedulerRepository, Commands],
) -> None:
    first, _, _ = replicas
    await allocate(first, command_for(302))
    with pytest.raises(JobAlreadyRunning):  # the guard sees it running; the read says so
        await allocate(first, command_for(302))
    await finish(first, 302, "302.1")

    # Expired in the document only (the catalog announced it after the command's snapshot was taken).
    await first.schedules.update_one({"_id": "job:302"}, {"$set": {"expires_at": NOW - timedelta(days=1)}})
    with pytest.raises(JobExpired):
        await allocate(first, command_for(302))
    await first.schedules.update_one({"_id": "job:302"}, {"$set": {"expires_at": None}})

    command = command_for(302)
    with pytest.raises(CommandExpired):  # the caller gave up: the guarded write is rolled back
        await first.allocate_run(
            request_id=command.id, job_id=302, now=NOW, wall=NOW, still_wanted=lambda: False,
            build=lambda run_id: build_run_requested(command, run_id, NOW),
        )  # fmt: skip
    doc = await first.schedules.find_one({"_id": "job:302"})
    assert doc is not None and doc["running"] is None and doc["last_run"] == 1
    assert (await allocate(first, command_for(302))).data.run_id == "302.2"


async def test_a_batch_of_known_jobs_reads_nothing_and_a_stale_guess_in_it_is_decided_on_the_documents(
    replicas: tuple[MongoSchedulerRepository, MongoSchedulerRepository, Commands],
) -> None:
    first, second, commands = replicas
    jobs = (310, 311, 312)
    for job in jobs:
        await allocate(first, command_for(job))
        await finish(first, job, f"{job}.1")
    commands.take()
    results = await first.allocate_runs([request_for(command_for(j)) for j in jobs], NOW)
    assert [r[0].data.run_id for r in results if isinstance(r, tuple)] == ["310.2", "311.2", "312.2"]
    seen = commands.take()
    assert seen[("find", "schedule_state")] == 0 and seen[("update", "schedule_state")] == 1, seen
    for job in jobs:
        await finish(first, job, f"{job}.2")

    # The other replica ran 311 (run 3, finished) and runs 312 (run 3, still running).
    await allocate(second, command_for(311))
    await finish(second, 311, "311.3")
    await allocate(second, command_for(312))
    commands.take()
    results = await first.allocate_runs([request_for(command_for(j)) for j in jobs], NOW)
    assert [r[0].data.run_id if isinstance(r, tuple) else type(r) for r in results] == [
        "310.3", "311.4", JobAlreadyRunning,
    ]  # fmt: skip
    seen = commands.take()
    assert seen[("find", "schedule_state")] == 1, seen  # the guesses failed: read, decided as before
    docs = {d["_id"]: d async for d in first.schedules.find({"_id": {"$in": ["job:310", "job:311"]}})}
    assert docs["job:310"]["last_run"] == 3 and docs["job:311"]["last_run"] == 4
