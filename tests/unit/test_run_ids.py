"""Run ids (`JobID.RunID`) and the scheduler's run-now use case against in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from services.scheduler.domain import next_run_id
from services.scheduler.errors import JobAlreadyRunning
from services.scheduler.ports import EventPublisher, SchedulerRepository
from services.scheduler.service import SchedulerService
from shared.contracts import RunRequested
from shared.contracts.runs import RunStatus, Trigger
from shared.errors import RetryableError, ValidationFailed
from shared.runid import RunId
from tests.unit.factories import T0, job_snapshot, run_finished, run_job

# --- RunId -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1.1", "7.12", "123.4567"])
def test_run_id_str_and_parse_round_trip(text: str) -> None:
    run_id = RunId.parse(text)

    assert str(run_id) == text
    assert RunId.parse(str(run_id)) == run_id


def test_run_id_parts() -> None:
    run_id = RunId.parse("42.7")

    assert (run_id.owner_id, run_id.number) == (42, 7)
    assert str(RunId(42, 7)) == "42.7"


def test_run_ids_order_numerically_by_owner_then_number() -> None:
    texts = ["10.1", "2.10", "2.9", "1.100", "2.1"]

    ordered = sorted(RunId.parse(t) for t in texts)

    assert [str(r) for r in ordered] == ["1.100", "2.1", "2.9", "2.10", "10.1"]
    assert RunId(2, 9) < RunId(2, 10) < RunId(3, 1)


@pytest.mark.parametrize("text", ["", "1", "1.", ".1", "a.b", "1.b", "1.2.3", "1,2", " 1.2", "-1.2", "1.-2"])
def test_malformed_run_id_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        RunId.parse(text)

    assert error.value.field == "run_id"


@pytest.mark.parametrize(("owner", "number"), [(0, 1), (1, 0), (-1, 2)])
def test_run_id_parts_must_be_positive(owner: int, number: int) -> None:
    with pytest.raises(ValidationFailed):
        RunId(owner, number)


def test_next_run_id_counts_up_from_one() -> None:
    assert next_run_id(5, 0) == RunId(5, 1)
    assert next_run_id(5, 1) == RunId(5, 2)
    assert str(next_run_id(5, 41)) == "5.42"


# --- fakes -----------------------------------------------------------------------------------------


@dataclass
class OutboxEntry:
    request_id: str
    message: RunRequested
    created_at: datetime
    published: bool = False


class InMemorySchedulerRepository:
    """The `SchedulerRepository` contract in memory: counters, running jobs, outbox."""

    def __init__(self) -> None:
        self.counters: dict[int, int] = {}
        self.running: dict[int, str | None] = {}
        self.outbox: dict[str, OutboxEntry] = {}  # by run id
        self.allocations = 0

    async def allocate_run(
        self, *, request_id: str, job_id: int, build: Callable[[RunId], RunRequested]
    ) -> RunRequested:
        for entry in self.outbox.values():
            if entry.request_id == request_id:
                return entry.message
        if running := self.running.get(job_id):
            raise JobAlreadyRunning(f"job {job_id} is running (run {running})")
        run_id = next_run_id(job_id, self.counters.get(job_id, 0))
        message = build(run_id)
        self.counters[job_id] = run_id.number
        self.running[job_id] = message.data.run_id
        self.outbox[message.data.run_id] = OutboxEntry(request_id, message, created_at=message.time)
        self.allocations += 1
        return message

    async def mark_published(self, run_id: str) -> None:
        self.outbox[run_id].published = True

    async def unpublished(self, older_than: datetime) -> list[RunRequested]:
        return [e.message for e in self.outbox.values() if not e.published and e.created_at < older_than]

    async def release_job(self, job_id: int, run_id: str) -> None:
        if self.running.get(job_id) == run_id:
            self.running[job_id] = None


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
    typed_repo: SchedulerRepository = repo  # the fakes honour the ports
    typed_publisher: EventPublisher = publisher
    return Scheduler(SchedulerService(typed_repo, typed_publisher, clock), repo, publisher, clock)


async def finish(s: Scheduler, run_id: str) -> None:
    await s.service.run_finished(run_finished(run_id, status=RunStatus.SUCCEEDED))


# --- SchedulerService ------------------------------------------------------------------------------


async def test_run_now_allocates_the_first_run_of_the_job(scheduler: Scheduler) -> None:
    reply = await scheduler.service.run_now(run_job(7))

    assert reply.accepted
    assert reply.run_id == "7.1"
    assert reply.reason is None
    assert [m.data.run_id for m in scheduler.publisher.sent] == ["7.1"]
    assert scheduler.repo.outbox["7.1"].published


async def test_run_now_refuses_while_the_job_is_running(scheduler: Scheduler) -> None:
    await scheduler.service.run_now(run_job(7))

    reply = await scheduler.service.run_now(run_job(7))

    assert not reply.accepted
    assert reply.run_id is None
    assert reply.reason is not None
    assert "running" in reply.reason
    assert len(scheduler.publisher.sent) == 1
    assert scheduler.repo.counters[7] == 1


async def test_after_the_run_finishes_the_next_run_is_numbered_on(scheduler: Scheduler) -> None:
    await scheduler.service.run_now(run_job(7))
    await finish(scheduler, "7.1")

    reply = await scheduler.service.run_now(run_job(7))

    assert reply.accepted
    assert reply.run_id == "7.2"
    assert [m.data.run_id for m in scheduler.publisher.sent] == ["7.1", "7.2"]


async def test_a_stale_finish_of_another_run_does_not_release_the_job(scheduler: Scheduler) -> None:
    await scheduler.service.run_now(run_job(7))
    await finish(scheduler, "7.1")
    await scheduler.service.run_now(run_job(7))

    await finish(scheduler, "7.1")  # redelivered, late
    reply = await scheduler.service.run_now(run_job(7))

    assert not reply.accepted


async def test_redelivered_command_gets_the_same_run_id_and_allocates_nothing(scheduler: Scheduler) -> None:
    command = run_job(7, command_id="cmd-1")
    first = await scheduler.service.run_now(command)

    again = await scheduler.service.run_now(command)

    assert again.accepted
    assert again.run_id == first.run_id == "7.1"
    assert scheduler.repo.allocations == 1
    assert scheduler.repo.counters == {7: 1}
    assert list(scheduler.repo.outbox) == ["7.1"]
    # A resend is the same message, so downstream consumers can drop the duplicate.
    assert {m.id for m in scheduler.publisher.sent} == {scheduler.publisher.sent[0].id}


async def test_redelivered_command_after_the_run_finished_still_gets_its_run_id(scheduler: Scheduler) -> None:
    command = run_job(7, command_id="cmd-1")
    await scheduler.service.run_now(command)
    await finish(scheduler, "7.1")

    again = await scheduler.service.run_now(command)

    assert again.run_id == "7.1"
    assert scheduler.repo.counters == {7: 1}
    assert (await scheduler.service.run_now(run_job(7))).run_id == "7.2"


async def test_failed_publish_stays_in_the_outbox_until_the_relay_sends_it_once(scheduler: Scheduler) -> None:
    scheduler.publisher.broker_down = True

    reply = await scheduler.service.run_now(run_job(7))

    assert reply.accepted
    assert reply.run_id == "7.1"
    assert scheduler.publisher.sent == []
    assert not scheduler.repo.outbox["7.1"].published

    scheduler.publisher.broker_down = False
    scheduler.clock.advance(1)
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 0  # too young to resend
    assert scheduler.publisher.sent == []

    scheduler.clock.advance(10)
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 1
    assert [m.data.run_id for m in scheduler.publisher.sent] == ["7.1"]
    assert scheduler.repo.outbox["7.1"].published

    scheduler.clock.advance(10)
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 0
    assert len(scheduler.publisher.sent) == 1


async def test_relay_during_an_outage_keeps_the_entry_for_later(scheduler: Scheduler) -> None:
    scheduler.publisher.broker_down = True
    await scheduler.service.run_now(run_job(7))
    scheduler.clock.advance(60)

    await scheduler.service.relay_outbox(timedelta(seconds=5))

    assert not scheduler.repo.outbox["7.1"].published
    scheduler.publisher.broker_down = False
    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 1
    assert len(scheduler.publisher.sent) == 1


async def test_relay_has_nothing_to_do_after_a_successful_publish(scheduler: Scheduler) -> None:
    await scheduler.service.run_now(run_job(7))
    scheduler.clock.advance(60)

    assert await scheduler.service.relay_outbox(timedelta(seconds=5)) == 0
    assert len(scheduler.publisher.sent) == 1


async def test_two_jobs_have_independent_counters(scheduler: Scheduler) -> None:
    assert (await scheduler.service.run_now(run_job(7))).run_id == "7.1"
    assert (await scheduler.service.run_now(run_job(8))).run_id == "8.1"
    await finish(scheduler, "7.1")
    assert (await scheduler.service.run_now(run_job(7))).run_id == "7.2"
    await finish(scheduler, "8.1")
    assert (await scheduler.service.run_now(run_job(8))).run_id == "8.2"

    assert scheduler.repo.counters == {7: 2, 8: 2}


async def test_published_run_requested_carries_trigger_and_job_snapshot(scheduler: Scheduler) -> None:
    command = run_job(7)

    await scheduler.service.run_now(command)

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
