"""Group runs, triggers and expiration against the real broker and database.

The test plays the executors: it takes each `RunRequested` from `executor.runs` and publishes the
member's `RunFinished` itself, so the scheduler's sequencing is observed from the outside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.contracts import (
    GroupChanged,
    GroupRunFinished,
    GroupRunStarted,
    RunGroup,
    StopGroupRun,
    TriggerFired,
)
from shared.contracts.catalog import GroupChangedData
from shared.contracts.groups import RunGroupData, StopGroupRunData
from shared.contracts.jobs import OnEventSchedule
from shared.contracts.runs import RunStatus
from shared.contracts.triggers import TriggerData
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.scheduler_harness import (
    Harness,
    job_changed,
    running_scheduler,
    snapshot,
)
from tests.support.waiting import eventually


def group_changed(group_id: int, job_ids: tuple[int, ...], **extra: object) -> GroupChanged:
    data = GroupChangedData(
        group_id=group_id, name=f"group-{group_id}", job_ids=job_ids, active=True, **extra
    )
    return GroupChanged(source="test", data=data)


def run_group(group_id: int) -> RunGroup:
    return RunGroup(source="test", data=RunGroupData(group_id=group_id, requested_by="tester"))


async def setup_group(h: Harness, group_id: int, job_ids: tuple[int, ...], **extra: object) -> None:
    for job_id in job_ids:
        await h.publish(job_changed(snapshot(job_id)))
    await h.publish(group_changed(group_id, job_ids, **extra))
    for job_id in job_ids:
        await h.until_known(f"job:{job_id}")
    await h.until_known(f"group:{group_id}")


async def step(h: Harness, job_id: int, count: int = 1) -> str:
    """Wait for the `count`-th run of a member and return its run id."""
    await eventually(lambda: len(h.runs_of(job_id)) >= count, what=f"run {count} of job {job_id}", timeout=15)
    return h.runs_of(job_id)[count - 1].data.run_id


def finished_group(h: Harness, group_run_id: str) -> GroupRunFinished | None:
    for event in h.group_events:
        if isinstance(event, GroupRunFinished) and event.data.group_run_id == group_run_id:
            return event
    return None


async def test_group_runs_members_in_order_and_stops_after_a_failing_step(scheduler: Harness) -> None:
    h = scheduler
    await setup_group(h, 5, (51, 52, 53))
    reply = await h.request(run_group(5))
    assert reply.accepted and reply.run_id == "5.1"
    again = await h.request(run_group(5))
    assert not again.accepted and "running" in (again.reason or "")

    first = await step(h, 51)
    message = h.runs_of(51)[0].data
    assert (message.trigger, message.group_run_id, message.group_id, message.group_name) == (
        "group", "5.1", 5, "group-5",
    )  # fmt: skip
    assert h.runs_of(52) == []  # the second member waits for the first
    await h.finish(51, first, RunStatus.PARTIAL)  # partial counts as success
    second = await step(h, 52)
    await h.finish(52, second, RunStatus.FAILED)
    done = await eventually(lambda: finished_group(h, "5.1"), what="GroupRunFinished", timeout=15)
    assert done.data.status == RunStatus.FAILED
    assert done.data.member_run_ids == (first, second)
    assert h.runs_of(53) == []
    started = [e for e in h.group_events if isinstance(e, GroupRunStarted)]
    assert [e.data.group_run_id for e in started] == ["5.1"]
    state = await h.schedule_doc("group:5")
    assert state is not None and state["running"] is None


async def test_group_with_continue_on_failure_runs_every_member(scheduler: Harness) -> None:
    h = scheduler
    await setup_group(h, 6, (61, 62, 63), continue_on_failure=True)
    assert (await h.request(run_group(6))).accepted
    await h.finish(61, await step(h, 61), RunStatus.FAILED)
    await h.finish(62, await step(h, 62), RunStatus.SUCCEEDED)
    await h.finish(63, await step(h, 63), RunStatus.SUCCEEDED)
    done = await eventually(lambda: finished_group(h, "6.1"), what="GroupRunFinished", timeout=15)
    assert done.data.status == RunStatus.FAILED and "61.1" in (done.data.error or "")
    assert done.data.member_run_ids == ("61.1", "62.1", "63.1")


async def test_group_succeeds_across_a_scheduler_restart(
    settings: CommonSettings, mongo: MongoClient, topology: Topology
) -> None:
    async with running_scheduler(settings, mongo) as before:
        await setup_group(before, 7, (71, 72))
        assert (await before.request(run_group(7))).accepted
        first = await step(before, 71)
    # The first scheduler is gone (group state is in the database); a new one carries on.
    async with running_scheduler(settings, mongo) as after:
        await after.finish(71, first)
        second = await step(after, 72)
        await after.finish(72, second)
        done = await eventually(lambda: finished_group(after, "7.1"), what="GroupRunFinished", timeout=15)
    assert done.data.status == RunStatus.SUCCEEDED
    assert done.data.member_run_ids == ("71.1", "72.1")
    await mongo.drop_database(settings.database("scheduler"))


async def test_stopping_a_group_run_stops_the_current_member_and_requests_no_more(scheduler: Harness) -> None:
    h = scheduler
    await setup_group(h, 8, (81, 82))
    assert (await h.request(run_group(8))).accepted
    current = await step(h, 81)
    stop = StopGroupRun(source="test", data=StopGroupRunData(group_run_id="8.1", requested_by="tester"))
    assert (await h.request(stop)).accepted
    await eventually(
        lambda: [s for s in h.stops if s.data.run_id == current], what="StopRun of the member", timeout=15
    )
    await h.finish(81, current, RunStatus.STOPPED)
    done = await eventually(lambda: finished_group(h, "8.1"), what="GroupRunFinished", timeout=15)
    assert done.data.status == RunStatus.STOPPED
    assert h.runs_of(82) == []


async def test_a_trigger_starts_subscribed_jobs_once_per_idempotency_key(scheduler: Harness) -> None:
    h = scheduler
    on_event = OnEventSchedule(trigger="crm.export-ready")
    await h.publish(job_changed(snapshot(91, on_event)))
    await h.publish(job_changed(snapshot(92, on_event)))
    await h.publish(job_changed(snapshot(93, OnEventSchedule(trigger="other"))))
    await h.publish(job_changed(snapshot(94, on_event), active=False))
    for job_id in (91, 92, 93, 94):
        await h.until_known(f"job:{job_id}")

    def fired(key: str) -> TriggerFired:
        data = TriggerData(name="crm.export-ready", idempotency_key=key, params={"file": f"{key}.csv"})
        return TriggerFired(source="crm", data=data)

    for _ in range(3):  # the same event three times
        await h.publish_trigger(fired("batch-1"))
    await eventually(lambda: h.runs_of(91) and h.runs_of(92), what="triggered runs", timeout=15)
    await h.finish(91, "91.1")
    await h.finish(92, "92.1")
    await eventually(lambda: _free(h, 91, 92), what="jobs freed", timeout=15)
    await h.publish_trigger(fired("batch-2"))
    await eventually(
        lambda: len(h.runs_of(91)) == 2 and len(h.runs_of(92)) == 2, what="second key's runs", timeout=15
    )
    await h.publish_trigger(fired("batch-1"))  # a late duplicate of the first key
    marker = TriggerData(name="other", idempotency_key="marker")  # published after the duplicate
    await h.publish_trigger(TriggerFired(source="crm", data=marker))
    await eventually(lambda: h.runs_of(93), what="the marker run", timeout=15)
    ledger = await h.ledger("job:91")
    assert [e["slot"] for e in ledger] == [
        "trigger:crm.export-ready:batch-1",
        "trigger:crm.export-ready:batch-2",
    ]
    assert len(h.runs_of(91)) == 2 and len(h.runs_of(93)) == 1 and h.runs_of(94) == []
    message = h.runs_of(91)[1].data
    assert message.trigger == "event" and message.trigger_params == {"file": "batch-2.csv"}


async def _free(h: Harness, *job_ids: int) -> bool:
    for job_id in job_ids:
        doc = await h.schedule_doc(f"job:{job_id}")
        if doc is None or doc["running"] is not None:
            return False
    return True


@pytest.mark.parametrize("kind", ["job"])
async def test_expiration_waits_for_the_run_in_progress(scheduler: Harness, kind: str) -> None:
    h = scheduler
    expires = datetime.now(UTC) + timedelta(seconds=1)
    await h.publish(job_changed(snapshot(95, expires_at=expires)))
    await h.until_known("job:95")
    from tests.integration.test_scheduler_runs import run_now

    assert (await h.request(run_now(95))).accepted
    await eventually(
        lambda: datetime.now(UTC) > expires + timedelta(seconds=1), what="a second past the expiry", timeout=5
    )
    assert h.expires == []  # the run in progress finishes first
    await h.finish(95, "95.1")
    expire = await eventually(lambda: h.expires, what="Expire sent to the catalog", timeout=15)
    assert (expire[0].data.kind, expire[0].data.id) == ("job", 95)
