"""The scheduler's run-now use case and its outbox relay, against in-memory fakes (injectable clock)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from services.scheduler.domain import SlotPlan, next_run_id
from services.scheduler.domain.fires import OwnerKind
from services.scheduler.errors import CommandExpired, GroupRefused, JobAlreadyRunning
from services.scheduler.ports import EventPublisher, SchedulerStore
from services.scheduler.service import SchedulerService
from services.scheduler.store import FireResult
from services.scheduler.store.documents import ScheduleDoc
from services.scheduler.store.runs import RunRequest
from shared.contracts import Envelope, JobSnapshot, RunJob, RunJobReply, RunRequested
from shared.contracts.catalog import GroupChangedData
from shared.contracts.runs import RunStatus, Trigger
from shared.errors import Conflict, RetryableError
from shared.outbox import EPOCH, Entry, OutboxDelivery
from shared.runid import RunId
from tests.unit.factories import T0, job_snapshot, run_finished, run_job

# --- fakes -----------------------------------------------------------------------------------------


@dataclass
class OutboxEntry:
    request_id: str
    message: RunRequested
    created_at: datetime
    published: bool = False
    relay_until: datetime = EPOCH


class InMemoryOutbox(OutboxDelivery):
    """The outbox's storage in memory (claims included); publishing and relaying are the shared ones."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, OutboxEntry] = {}  # by run id (the entry id here)

    async def unclaimed(self, older_than: datetime, now: datetime, limit: int) -> list[Entry]:
        waiting = [
            (e.relay_until, e.created_at, run_id)
            for run_id, e in self.entries.items()
            if not e.published and e.created_at < older_than and e.relay_until <= now
        ]
        return [self._entry(run_id) for *_, run_id in sorted(waiting)[:limit]]

    async def claim(self, entry: Entry, now: datetime) -> Entry | None:
        stored = self.entries[entry.id]
        if stored.published or stored.relay_until != entry.relay_until:
            return None
        stored.relay_until = now + timedelta(seconds=30)
        return self._entry(entry.id)

    async def release(self, entry: Entry, now: datetime) -> None:
        if self.entries[entry.id].relay_until == entry.relay_until:
            self.entries[entry.id].relay_until = now

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            self.entries[entry_id].published = True

    async def prune(self, before: datetime) -> int:
        pruned = [k for k, e in self.entries.items() if e.published and e.created_at < before]
        for k in pruned:
            del self.entries[k]
        return len(pruned)

    def _entry(self, run_id: str) -> Entry:
        stored = self.entries[run_id]
        return Entry(run_id, (stored.message,), stored.relay_until)


class InMemorySchedulerRepository:
    """The scheduler's store port in memory: run counters, running jobs, the outbox, followed jobs.

    Groups and trigger events are out of these tests' scope: groups are refused, no job follows a trigger.
    """

    def __init__(self) -> None:
        self.counters: dict[int, int] = {}
        self.running: dict[int, str | None] = {}
        self.outbox = InMemoryOutbox()
        self.allocations = 0
        self.before_commit: Callable[[], None] = lambda: None  # e.g. time spent waiting on a conflict
        self.followed: dict[int, bool] = {}  # job id: active, as the catalog announced
        self.batches: list[int] = []  # the size of each allocate_runs call

    async def allocate_run(
        self, *, request_id: str, job_id: int, build: Callable[[RunId], RunRequested], now: datetime,
        wall: datetime, expires_at: datetime | None = None, still_wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[RunRequested, str]:  # fmt: skip
        for entry in self.outbox.entries.values():
            if entry.request_id == request_id:
                return entry.message, entry.message.data.run_id
        if running := self.running.get(job_id):
            raise JobAlreadyRunning(f"job {job_id} is running (run {running})")
        run_id = next_run_id(job_id, self.counters.get(job_id, 0))
        message = build(run_id)
        self.before_commit()
        if not still_wanted():
            raise CommandExpired(f"the request to run job {job_id} passed its deadline")
        self.counters[job_id] = run_id.number
        self.running[job_id] = message.data.run_id
        self.outbox.entries[message.data.run_id] = OutboxEntry(request_id, message, created_at=wall)
        self.allocations += 1
        return message, message.data.run_id

    async def allocate_runs(
        self, requests: Sequence[RunRequest], wall: datetime
    ) -> list[tuple[RunRequested, str] | Conflict]:
        self.batches.append(len(requests))
        results: list[tuple[RunRequested, str] | Conflict] = []
        for r in requests:
            try:
                results.append(
                    await self.allocate_run(
                        request_id=r.request_id,
                        job_id=r.job_id,
                        build=r.build,
                        now=r.now,
                        wall=wall,
                        expires_at=r.expires_at,
                        still_wanted=r.still_wanted,
                    )
                )
            except Conflict as refused:
                results.append(refused)
        return results

    async def run_finished(
        self, job_id: int, run_id: str, status: RunStatus, now: datetime, wall: datetime
    ) -> FireResult:
        if self.running.get(job_id) == run_id:
            self.running[job_id] = None
        return FireResult()

    async def trigger_owners(self, name: str) -> list[ScheduleDoc]:
        return []

    async def fire_trigger(
        self, key: str, slot: str, params: dict[str, str], now: datetime, wall: datetime
    ) -> FireResult:
        return FireResult()

    async def run_group(
        self, *, request_id: str, group_id: int, requested_by: str, trigger: Trigger, now: datetime,
        wall: datetime, still_wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[str, str | None, list[Envelope]]:  # fmt: skip
        raise GroupRefused(f"group {group_id} is not known to the scheduler")

    async def stop_group_run(
        self, group_run_id: str, requested_by: str, now: datetime, wall: datetime
    ) -> FireResult:
        raise GroupRefused(f"group run {group_run_id} does not exist")

    async def fire_group(
        self, key: str, planner: Callable[[ScheduleDoc], SlotPlan], now: datetime, wall: datetime
    ) -> FireResult:
        return FireResult()

    async def apply_job(self, job: JobSnapshot, active: bool, now: datetime) -> None:
        self.followed[job.job_id] = active

    async def apply_group(self, group: GroupChangedData, now: datetime) -> None:
        return None

    async def delete(self, kind: OwnerKind, owner_id: int) -> None:
        self.followed.pop(owner_id, None)

    async def expired(self, parts: Sequence[int], now_s: int) -> list[ScheduleDoc]:
        return []

    async def expire_sent(self, key: str, wall: datetime) -> None:
        return None


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[RunRequested] = []
        self.broker_down = False

    async def publish(self, message: RunRequested) -> None:
        if self.broker_down:
            raise RetryableError("broker unavailable")
        self.sent.append(message)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Scheduler:
    service: SchedulerService
    repo: InMemorySchedulerRepository
    publisher: RecordingPublisher
    clock: Clock


@pytest.fixture
def scheduler() -> Scheduler:
    repo, publisher, clock = InMemorySchedulerRepository(), RecordingPublisher(), Clock()
    typed_publisher: EventPublisher = publisher
    store: SchedulerStore = repo
    service = SchedulerService(store, typed_publisher, clock, wall=clock)
    return Scheduler(service, repo, publisher, clock)


async def run_now(s: Scheduler, command: RunJob) -> RunJobReply:
    """Run now, then wait for its publish (which follows the answer)."""
    reply = await s.service.run_now(command)
    await s.service.settle()
    return reply


async def finish(s: Scheduler, run_id: str) -> None:
    await s.service.run_finished(run_finished(run_id, status=RunStatus.SUCCEEDED))


# --- SchedulerService ------------------------------------------------------------------------------


async def test_run_now_allocates_the_first_run_of_the_job(scheduler: Scheduler) -> None:
    reply = await run_now(scheduler, run_job(7))

    assert reply.accepted
    assert reply.run_id == "7.1"
    assert reply.reason is None
    assert [m.data.run_id for m in scheduler.publisher.sent] == ["7.1"]
    assert scheduler.repo.outbox.entries["7.1"].published


async def test_run_now_refuses_while_the_job_is_running(scheduler: Scheduler) -> None:
    await run_now(scheduler, run_job(7))

    reply = await run_now(scheduler, run_job(7))

    assert not reply.accepted
    assert reply.run_id is None
    assert reply.reason is not None
    assert "running" in reply.reason
    assert len(scheduler.publisher.sent) == 1
    assert scheduler.repo.counters[7] == 1


async def test_after_the_run_finishes_the_next_run_is_numbered_on(scheduler: Scheduler) -> None:
    await run_now(scheduler, run_job(7))
    await finish(scheduler, "7.1")

    reply = await run_now(scheduler, run_job(7))

    assert reply.accepted
    assert reply.run_id == "7.2"
    assert [m.data.run_id for m in scheduler.publisher.sent] == ["7.1", "7.2"]


async def test_a_stale_finish_of_another_run_does_not_release_the_job(scheduler: Scheduler) -> None:
    await run_now(scheduler, run_job(7))
    await finish(scheduler, "7.1")
    await run_now(scheduler, run_job(7))

    await finish(scheduler, "7.1")  # redelivered, late
    reply = await run_now(scheduler, run_job(7))

    assert not reply.accepted


async def test_redelivered_command_gets_the_same_run_id_and_allocates_nothing(scheduler: Scheduler) -> None:
    command = run_job(7, command_id="cmd-1")
    first = await run_now(scheduler, command)

    again = await run_now(scheduler, command)

    assert again.accepted
    assert again.run_id == first.run_id == "7.1"
    assert scheduler.repo.allocations == 1
    assert scheduler.repo.counters == {7: 1}
    assert list(scheduler.repo.outbox.entries) == ["7.1"]
    # A resend is the same message, so downstream consumers can drop the duplicate.
    assert {m.id for m in scheduler.publisher.sent} == {scheduler.publisher.sent[0].id}


async def test_redelivered_command_after_the_run_finished_still_gets_its_run_id(scheduler: Scheduler) -> None:
    command = run_job(7, command_id="cmd-1")
    await run_now(scheduler, command)
    await finish(scheduler, "7.1")

    again = await run_now(scheduler, command)

    assert again.run_id == "7.1"
    assert scheduler.repo.counters == {7: 1}
    assert (await run_now(scheduler, run_job(7))).run_id == "7.2"


async def test_failed_publish_stays_in_the_outbox_until_the_relay_sends_it_once(scheduler: Scheduler) -> None:
    scheduler.publisher.broker_down = True

    reply = await run_now(scheduler, run_job(7))

    assert reply.accepted
    assert reply.run_id == "7.1"
    assert scheduler.publisher.sent == []
    assert not scheduler.repo.outbox.entries["7.1"].published

    scheduler.publisher.broker_down = False
    scheduler.clock.advance(1)
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 0  # too young to resend
    assert scheduler.publisher.sent == []

    scheduler.clock.advance(10)
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 1
    assert [m.data.run_id for m in scheduler.publisher.sent] == ["7.1"]
    assert scheduler.repo.outbox.entries["7.1"].published

    scheduler.clock.advance(10)
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 0
    assert len(scheduler.publisher.sent) == 1


async def test_relay_during_an_outage_keeps_the_entry_for_later(scheduler: Scheduler) -> None:
    scheduler.publisher.broker_down = True
    await run_now(scheduler, run_job(7))
    scheduler.clock.advance(60)

    await scheduler.service.relay_outbox(timedelta(seconds=5))

    assert not scheduler.repo.outbox.entries["7.1"].published
    scheduler.publisher.broker_down = False
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 1
    assert len(scheduler.publisher.sent) == 1


async def test_relay_has_nothing_to_do_after_a_successful_publish(scheduler: Scheduler) -> None:
    await run_now(scheduler, run_job(7))
    scheduler.clock.advance(60)

    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 0
    assert len(scheduler.publisher.sent) == 1


async def test_two_jobs_have_independent_counters(scheduler: Scheduler) -> None:
    assert (await run_now(scheduler, run_job(7))).run_id == "7.1"
    assert (await run_now(scheduler, run_job(8))).run_id == "8.1"
    await finish(scheduler, "7.1")
    assert (await run_now(scheduler, run_job(7))).run_id == "7.2"
    await finish(scheduler, "8.1")
    assert (await run_now(scheduler, run_job(8))).run_id == "8.2"

    assert scheduler.repo.counters == {7: 2, 8: 2}


async def test_published_run_requested_carries_trigger_and_job_snapshot(scheduler: Scheduler) -> None:
    command = run_job(7)

    await run_now(scheduler, command)

    (message,) = scheduler.publisher.sent
    assert isinstance(message, RunRequested)
    assert message.data.run_id == "7.1"
    assert message.subject == "7.1"
    assert message.data.trigger == Trigger.ON_DEMAND
    assert message.data.job == job_snapshot(7)
    assert message.data.job == command.data.job
    assert message.data.requested_by == "ops"
    assert message.data.requested_at == T0
    assert message.time == T0
    assert message.source == "connect/scheduler"
    assert message.id == "run-requested-7.1"


async def test_a_deadline_that_passes_while_the_run_is_allocated_aborts_it(scheduler: Scheduler) -> None:
    """The caller gave up while the allocation waited (a conflicting transaction): nothing is committed."""
    command = run_job(7).model_copy(update={"deadline": scheduler.clock.now + timedelta(seconds=10)})
    scheduler.repo.before_commit = lambda: scheduler.clock.advance(20)
    reply = await run_now(scheduler, command)
    assert reply.expired and not reply.accepted
    assert scheduler.repo.allocations == 0 and scheduler.repo.outbox.entries == {}


async def test_concurrent_run_now_commands_are_allocated_together_and_each_answered(
    scheduler: Scheduler,
) -> None:
    """Commands arriving while an allocation commits wait for it, then go in one allocation."""
    commands = [run_job(job) for job in range(20, 30)] + [run_job(20)]  # the last one overlaps job 20
    replies = await asyncio.gather(*(scheduler.service.run_now(c) for c in commands))
    await scheduler.service.settle()
    assert [r.run_id for r in replies[:10]] == [f"{job}.1" for job in range(20, 30)]
    assert not replies[10].accepted and "running" in (replies[10].reason or "")
    assert scheduler.repo.batches == [11]  # all arrived before the allocation started: one allocation
    assert sorted(m.data.run_id for m in scheduler.publisher.sent) == sorted(f"{j}.1" for j in range(20, 30))
    assert all(e.published for e in scheduler.repo.outbox.entries.values())
    # A lone command is allocated at once, alone.
    assert (await run_now(scheduler, run_job(31))).run_id == "31.1"
    assert scheduler.repo.batches == [11, 1]


async def test_the_answer_does_not_wait_for_the_publish(scheduler: Scheduler) -> None:
    """The reply leaves at the commit; until the broker confirms, the entry stays unpublished (relayed)."""
    gate = asyncio.Event()
    publish = scheduler.publisher.publish

    async def slow(message: RunRequested) -> None:
        await gate.wait()
        await publish(message)

    scheduler.publisher.publish = slow  # type: ignore[method-assign]
    reply = await asyncio.wait_for(scheduler.service.run_now(run_job(7)), 5)
    assert reply.accepted and reply.run_id == "7.1"
    assert scheduler.publisher.sent == [] and not scheduler.repo.outbox.entries["7.1"].published
    gate.set()
    await scheduler.service.settle()
    assert [m.data.run_id for m in scheduler.publisher.sent] == ["7.1"]
    assert scheduler.repo.outbox.entries["7.1"].published


async def test_the_relay_prunes_published_entries_past_their_retention_only(scheduler: Scheduler) -> None:
    await run_now(scheduler, run_job(7))
    scheduler.publisher.broker_down = True
    await run_now(scheduler, run_job(8))  # unpublished: kept whatever its age
    scheduler.clock.advance(30 * 60)
    await scheduler.service.relay_outbox(timedelta(hours=10))
    assert set(scheduler.repo.outbox.entries) == {"7.1", "8.1"}  # younger than the retention (1 h)
    scheduler.clock.advance(31 * 60)
    await scheduler.service.relay_outbox(timedelta(hours=10))
    assert set(scheduler.repo.outbox.entries) == {"8.1"}
