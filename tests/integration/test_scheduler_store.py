"""Run allocation and the outbox against the real database: atomic, idempotent, never overlapping."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from pymongo import AsyncMongoClient

from services.scheduler.domain import CatchUp, SlotPlan, build_run_requested, plan_slots
from services.scheduler.errors import CommandExpired, JobAlreadyRunning, JobExpired
from services.scheduler.service import SchedulerService
from services.scheduler.store import MongoSchedulerRepository
from services.scheduler.store.documents import ScheduleDoc, partition_of
from services.scheduler.store.runs import RunRequest
from services.scheduler.ticker import Ticker
from shared.contracts import Envelope, Expire, RunJob, RunRequested
from shared.contracts.jobs import EveryRule, RecurringSchedule
from shared.contracts.runs import RunJobData, RunStatus
from shared.mongo import MongoClient
from shared.runid import RunId
from shared.settings import CommonSettings
from tests.integration.test_messaging import run_requested
from tests.support.commands import Commands
from tests.support.scheduler_harness import snapshot

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
async def repo(mongo: MongoClient, settings: CommonSettings) -> AsyncIterator[MongoSchedulerRepository]:
    repository = MongoSchedulerRepository(mongo, settings.database("scheduler"))
    await repository.ensure_indexes()
    yield repository
    await mongo.drop_database(settings.database("scheduler"))


def command_for(job_id: int) -> RunJob:
    job = run_requested().data.job.model_copy(update={"job_id": job_id})
    return RunJob(source="test", data=RunJobData(job=job, requested_by="test"))


async def allocate(repo: MongoSchedulerRepository, command: RunJob) -> RunRequested:
    message, _ = await repo.allocate_run(
        request_id=command.id,
        job_id=command.data.job.job_id,
        build=lambda run_id: build_run_requested(command, run_id, NOW),
        now=NOW,
        wall=NOW,
    )
    return message


def request_for(command: RunJob, **changes: object) -> RunRequest:
    fields: dict[str, object] = {
        "request_id": command.id, "job_id": command.data.job.job_id, "now": NOW,
        "build": lambda run_id: build_run_requested(command, run_id, NOW),
    } | changes  # fmt: skip
    return RunRequest(**fields)  # type: ignore[arg-type]


async def test_a_batch_of_run_now_commands_is_checked_one_by_one_and_committed_together(
    repo: MongoSchedulerRepository,
) -> None:
    busy_command = command_for(204)
    busy = await allocate(repo, busy_command)  # already running
    commands = [command_for(j) for j in (200, 201, 200, 202, 203, 204)]
    requests = [request_for(c) for c in commands]
    requests[3] = request_for(commands[3], expires_at=NOW - timedelta(days=1))
    requests[4] = request_for(commands[4], still_wanted=lambda: False)  # its caller gave up
    results = await repo.allocate_runs(requests, NOW)
    assert [r[0].data.run_id for r in results[:2] if isinstance(r, tuple)] == ["200.1", "201.1"]
    assert [type(r) for r in results[2:]] == [
        JobAlreadyRunning,
        JobExpired,
        CommandExpired,
        JobAlreadyRunning,
    ]
    # The allocated ones are taken and in the outbox under their request ids; the refused left nothing.
    outbox = await repo.outbox.collection.find({"request_id": {"$exists": True}}).to_list(None)
    assert sorted(e["request_id"] for e in outbox) == sorted(
        [commands[0].id, commands[1].id, busy_command.id]
    )
    docs = {d["_id"]: d async for d in repo.schedules.find({})}
    assert docs["job:200"]["running"] == "200.1" and docs["job:201"]["running"] == "201.1"
    assert "job:202" not in docs and "job:203" not in docs
    assert docs["job:204"]["running"] == busy.data.run_id and docs["job:204"]["last_run"] == 1
    # Their run ends free the jobs (without a transaction: no group member), and the numbers count on.
    await repo.run_finished(200, "200.1", RunStatus.SUCCEEDED, NOW, NOW)
    assert (await allocate(repo, command_for(200))).data.run_id == "200.2"


async def test_a_batch_holding_a_redelivered_command_answers_it_as_the_first_time(
    repo: MongoSchedulerRepository,
) -> None:
    first_command, other = command_for(210), command_for(211)
    first = await allocate(repo, first_command)
    await repo.run_finished(210, first.data.run_id, RunStatus.SUCCEEDED, NOW, NOW)  # free again
    results = await repo.allocate_runs([request_for(first_command), request_for(other)], NOW)
    assert [r[0].data.run_id for r in results if isinstance(r, tuple)] == ["210.1", "211.1"]
    assert await repo.outbox.collection.count_documents({"request_id": first_command.id}) == 1
    doc = await repo.schedules.find_one({"_id": "job:210"})
    assert doc is not None and doc["last_run"] == 1 and doc["running"] is None


async def test_published_entries_are_pruned_after_their_retention_and_unpublished_ones_kept(
    repo: MongoSchedulerRepository,
) -> None:
    results = await repo.allocate_runs([request_for(command_for(j)) for j in (220, 221, 222)], NOW)
    entries = [r[1] for r in results if isinstance(r, tuple)]
    await repo.outbox.mark_published(entries[:2])
    assert await unpublished(repo) == 1
    assert await repo.outbox.prune(NOW) == 0  # not older than the cut
    assert await repo.outbox.prune(NOW + timedelta(seconds=1)) == 2
    assert [e["_id"] for e in await repo.outbox.collection.find({}).to_list(None)] == [entries[2]]


async def unpublished(repo: MongoSchedulerRepository) -> int:
    return await repo.outbox.collection.count_documents({"published": False})


async def test_run_numbers_count_up_per_job(repo: MongoSchedulerRepository) -> None:
    seen = []
    for _ in range(3):
        message = await allocate(repo, command_for(5))
        seen.append(message.data.run_id)
        await repo.run_finished(5, message.data.run_id, RunStatus.SUCCEEDED, NOW, NOW)
    other = await allocate(repo, command_for(6))
    assert seen == ["5.1", "5.2", "5.3"]
    assert other.data.run_id == "6.1"


async def test_concurrent_run_now_for_one_job_allocates_exactly_one_run(
    repo: MongoSchedulerRepository,
) -> None:
    results = await asyncio.gather(
        *(allocate(repo, command_for(9)) for _ in range(8)), return_exceptions=True
    )
    allocated = [r for r in results if isinstance(r, RunRequested)]
    refused = [r for r in results if isinstance(r, JobAlreadyRunning)]
    assert [m.data.run_id for m in allocated] == ["9.1"]
    assert len(refused) == 7, results


async def test_concurrent_runs_of_different_jobs_get_their_own_first_number(
    repo: MongoSchedulerRepository,
) -> None:
    messages = await asyncio.gather(*(allocate(repo, command_for(job)) for job in range(100, 120)))
    assert sorted(m.data.run_id for m in messages) == sorted(f"{job}.1" for job in range(100, 120))


async def test_a_redelivered_command_gets_the_same_run(repo: MongoSchedulerRepository) -> None:
    command = command_for(11)
    first = await allocate(repo, command)
    again = await allocate(repo, command)
    assert again == first
    assert RunId.parse(again.data.run_id) == RunId(11, 1)


async def test_outbox_lists_unpublished_runs_until_marked(repo: MongoSchedulerRepository) -> None:
    message = await allocate(repo, command_for(12))
    later = NOW + timedelta(minutes=1)
    entries = await repo.outbox.unclaimed(later, later, 100)
    assert [e.messages[0].data.run_id for e in entries] == ["12.1"]  # type: ignore[attr-defined]
    assert await repo.outbox.claim(entries[0], later) is not None
    assert await repo.outbox.unclaimed(later, later, 100) == []  # claimed: another replica leaves it alone
    await repo.outbox.mark_published([entries[0].id])
    assert await repo.outbox.unclaimed(later + timedelta(minutes=5), later + timedelta(minutes=5), 100) == []
    assert message.id == "run-requested-12.1"


async def test_a_late_schedule_records_its_missed_minutes_as_one_entry_and_fires_once(
    repo: MongoSchedulerRepository,
) -> None:
    every_minute = RecurringSchedule(rule=EveryRule(minutes=1))
    await repo.apply_job(snapshot(41, every_minute), True, NOW)  # first slot: NOW + 1 min
    late = NOW + timedelta(minutes=10, seconds=30)  # slots 1..10 due; catch-up fires only the last

    def planner(doc: ScheduleDoc) -> SlotPlan:
        return plan_slots(doc.schedule, doc.next_slot, late, CatchUp())

    # Two replicas racing for the same schedule: one wins, the other finds everything recorded.
    results = await asyncio.gather(*(repo.fire_one("job:41", planner, late, late) for _ in range(2)))
    ledger = sorted(await repo.ledger_entries("job:41"), key=lambda e: e["slot"])
    assert [(e["outcome"], e["slot"], e.get("until"), e.get("missed")) for e in ledger] == [
        ("missed", NOW + timedelta(minutes=1), NOW + timedelta(minutes=9), 9),
        ("requested", NOW + timedelta(minutes=10), None, None),
    ]
    assert sorted(len(r.messages) for r in results) == [0, 1]
    assert sum(len(r.outcomes) for r in results) == 10  # nine missed slots counted, one fire
    again = await repo.fire_one("job:41", planner, late, late)
    assert again.outcomes == [] and len(await repo.ledger_entries("job:41")) == 2


async def test_a_redelivered_command_after_its_run_finished_gets_the_same_run(
    repo: MongoSchedulerRepository,
) -> None:
    command = command_for(13)
    first = await allocate(repo, command)
    await repo.run_finished(13, first.data.run_id, RunStatus.SUCCEEDED, NOW, NOW)
    again = await allocate(repo, command)  # the job is free again: the outbox's request id answers
    assert again == first
    doc = await repo.schedules.find_one({"_id": "job:13"})
    assert doc is not None and doc["last_run"] == 1 and doc["running"] is None


async def test_a_change_committed_after_the_fire_read_the_schedule_is_not_overwritten(
    repo: MongoSchedulerRepository, settings: CommonSettings
) -> None:
    """A run-now that commits between the fire's read and its write: the fire sees it, never a second 52.1."""
    every_minute = RecurringSchedule(rule=EveryRule(minutes=1))
    await repo.apply_job(snapshot(52, every_minute), True, NOW)
    at = NOW + timedelta(minutes=1, seconds=5)
    meanwhile: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(settings.mongo_url)
    calls = 0

    def planner(doc: ScheduleDoc) -> SlotPlan:
        nonlocal calls
        calls += 1
        if calls == 1:  # another process allocates run 52.1 after this transaction read the schedule
            meanwhile[settings.database("scheduler")]["schedule_state"].update_one(
                {"_id": "job:52"}, {"$set": {"running": "52.1", "last_run": 1}}
            )
        return plan_slots(doc.schedule, doc.next_slot, at, CatchUp())

    try:
        batch = await repo.fire_due(doc_part(52, repo), epoch(at), 100, planner, at, at)
    finally:
        meanwhile.close()
    assert calls >= 2  # the write conflicted and the batch was planned again on the fresh document
    assert batch.result.messages == []
    assert [(e["outcome"], e.get("run_id")) for e in await repo.ledger_entries("job:52")] == [
        ("overlap", None)
    ]
    doc = await repo.schedules.find_one({"_id": "job:52"})
    assert doc is not None and (doc["running"], doc["last_run"]) == ("52.1", 1)


async def test_the_ledger_of_an_earlier_release_keeps_only_its_unique_id(
    repo: MongoSchedulerRepository,
) -> None:
    """Every fire paid for the old unique (owner, slot) index; `_id` ("owner|slot") is the same key."""
    await repo.db.ledger.create_index([("owner", 1), ("slot", 1)], unique=True)
    await repo.ensure_indexes()
    names = {index["name"] async for index in await repo.db.ledger.list_indexes()}
    assert names == {"_id_"}


def doc_part(job_id: int, repo: MongoSchedulerRepository) -> int:
    return partition_of(f"job:{job_id}", repo.db.partitions)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


class Recorded:
    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def publish(self, message: Envelope) -> None:
        self.messages.append(message)


async def queries(mongo: MongoClient) -> int:
    status = await mongo.admin.command("serverStatus")
    return int(status["opcounters"].get("query", 0))


def idle_ticker(repo: MongoSchedulerRepository, publisher: Recorded) -> Ticker:
    service = SchedulerService(repo, publisher, lambda: NOW, wall=lambda: NOW)
    return Ticker(service, repo, instance="idle", catch_up=CatchUp(grace=timedelta(seconds=90)))


async def test_an_idle_tick_costs_two_queries_whatever_the_partitions_held(
    repo: MongoSchedulerRepository, mongo: MongoClient
) -> None:
    hourly = RecurringSchedule(rule=EveryRule(minutes=60))
    for job_id in range(1, 101):  # none due before NOW + 1 h
        await repo.apply_job(snapshot(job_id, hourly), True, NOW)
    ticker = idle_ticker(repo, Recorded())
    await ticker.tick()  # takes the partitions (the lease is renewed every few seconds, not every tick)
    assert len(ticker.partitions) == 16

    before = await queries(mongo)
    handled = [await ticker.tick() for _ in range(5)]
    spent = await queries(mongo) - before

    print(f"\nqueries over 5 idle ticks holding 16 partitions: {spent}")
    assert handled == [0] * 5
    assert spent == 10  # the due probe and the expiry query, not two per partition (32)


async def test_an_expired_job_is_sent_to_the_catalog_once_per_resend_window(
    repo: MongoSchedulerRepository, mongo: MongoClient
) -> None:
    hourly = RecurringSchedule(rule=EveryRule(minutes=60))
    for job_id in range(1, 11):
        await repo.apply_job(snapshot(job_id, hourly), True, NOW)
    await repo.apply_job(snapshot(11, hourly, expires_at=NOW - timedelta(seconds=1)), True, NOW)
    publisher = Recorded()
    ticker = idle_ticker(repo, publisher)

    for _ in range(3):
        await ticker.tick()

    assert [(m.data.kind, m.data.id) for m in publisher.messages if isinstance(m, Expire)] == [("job", 11)]


async def test_run_now_costs_one_transaction_per_batch_and_its_end_one_write(
    mongo_url: str, settings: CommonSettings
) -> None:
    """Issue #14: a batch of run-now commands is one read, one bulk write, one insert, one commit; its
    publish one update; the end of a run-now run one guarded update, no transaction."""
    listener = Commands()
    client: MongoClient = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[listener])
    repo = MongoSchedulerRepository(client, settings.database("scheduler"))
    try:
        await repo.ensure_indexes()
        commands = [command_for(j) for j in range(230, 240)]
        for job in range(230, 240):  # announced by the catalog, as every job is before its first run
            await repo.apply_job(snapshot(job), True, NOW)
        listener.take()
        results = await repo.allocate_runs([request_for(c) for c in commands], NOW)
        await repo.outbox.mark_published([r[1] for r in results if isinstance(r, tuple)])
        assert listener.take() == Counter(
            {("find", "schedule_state"): 1, ("update", "schedule_state"): 1, ("insert", "outbox"): 1,
             ("commitTransaction", ""): 1, ("update", "outbox"): 1}
        )  # fmt: skip
        assert await unpublished(repo) == 0
        listener.take()
        await repo.run_finished(230, "230.1", RunStatus.SUCCEEDED, NOW, NOW)
        assert listener.take() == Counter({("update", "schedule_state"): 1})
        # A redelivered RunFinished (the job is free already) takes the transaction and changes nothing.
        await repo.run_finished(230, "230.1", RunStatus.SUCCEEDED, NOW, NOW)
        assert ("commitTransaction", "") in listener.take()
        assert (await allocate(repo, command_for(230))).data.run_id == "230.2"
    finally:
        await client.drop_database(settings.database("scheduler"))
        await client.close()
