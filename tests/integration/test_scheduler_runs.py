"""Run now, scheduled fires, catch-up and expiration against the real broker and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.contracts import RunJob
from shared.contracts.jobs import EveryRule, OneTimeSchedule, RecurringSchedule
from shared.contracts.runs import RunJobData
from tests.support.scheduler_harness import (
    Harness,
    job_changed,
    snapshot,
)
from tests.support.waiting import eventually


def run_now(job_id: int, **extra: object) -> RunJob:
    return RunJob(source="test", data=RunJobData(job=snapshot(job_id, **extra), requested_by="tester"))


async def test_run_now_while_running_is_refused_and_never_moves_the_next_run(scheduler: Harness) -> None:
    every_hour = RecurringSchedule(rule=EveryRule(minutes=60))
    await scheduler.publish(job_changed(snapshot(21, every_hour)))
    before = await scheduler.until_known("job:21")

    first = await scheduler.request(run_now(21))
    assert first.accepted and first.run_id == "21.1"
    second = await scheduler.request(run_now(21))
    assert not second.accepted
    assert "running" in (second.reason or "")

    await scheduler.finish(21, "21.1")
    third = await eventually(
        lambda: _accepted(scheduler, 21), what="run now after the run finished", timeout=15
    )
    assert third == "21.2"
    after = await scheduler.schedule_doc("job:21")
    assert after is not None
    assert after["next_run"] == before["next_run"] and after["previous_run"] is None
    await eventually(lambda: len(scheduler.runs_of(21)) == 2, what="both RunRequested published", timeout=10)
    assert [m.data.trigger for m in scheduler.runs_of(21)] == ["on_demand", "on_demand"]


async def _accepted(scheduler: Harness, job_id: int) -> str | None:
    reply = await scheduler.request(run_now(job_id))
    return reply.run_id if reply.accepted else None


async def test_expired_job_is_refused_run_now(scheduler: Harness) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    reply = await scheduler.request(run_now(22, expires_at=past))
    assert not reply.accepted and "expired" in (reply.reason or "")


async def test_one_time_schedule_fires_once_then_next_run_is_blank(scheduler: Harness) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1)
    job = snapshot(23, OneTimeSchedule(at=at))
    await scheduler.publish(job_changed(job))
    await eventually(lambda: scheduler.runs_of(23), what="the one-time run", timeout=15)
    message = scheduler.runs_of(23)[0]
    assert message.data.trigger == "scheduled"
    assert message.data.slot == at.replace(microsecond=at.microsecond // 1000 * 1000)
    state = await scheduler.schedule_doc("job:23")
    assert state is not None and state["next_run"] is None and state["previous_run"] is not None
    # The catalog announcing the job again (an edit of its name) does not fire the slot again.
    await scheduler.finish(23, "23.1")
    await scheduler.publish(job_changed(job.model_copy(update={"name": "renamed", "version": 2})))
    await eventually(lambda: _renamed(scheduler), what="the rename applied", timeout=10)
    ledger = await scheduler.ledger("job:23")
    assert [(e["outcome"], e.get("run_id")) for e in ledger] == [("requested", "23.1")]
    assert len(scheduler.runs_of(23)) == 1


async def _renamed(scheduler: Harness) -> bool:
    doc = await scheduler.schedule_doc("job:23")
    return bool(doc and doc.get("snapshot_name") == "renamed")
