"""The messages a run request becomes. Ids derive from run ids, so a resend is recognisable."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shared.contracts import GroupRunFinished, GroupRunStarted, JobSnapshot, RunJob, RunRequested
from shared.contracts.groups import GroupRunFinishedData, GroupRunStartedData
from shared.contracts.runs import RunRequestedData, RunStatus, Trigger
from shared.runid import RunId

SOURCE = "connect/scheduler"


def next_run_id(owner_id: int, last_number: int) -> RunId:
    """RunID counts up per job (and per group) from 1."""
    return RunId(owner_id, last_number + 1)


def _requested(data: RunRequestedData, now: datetime) -> RunRequested:
    return RunRequested(
        id=f"run-requested-{data.run_id}", source=SOURCE, subject=data.run_id, time=now, data=data
    )


def build_run_requested(command: RunJob, run_id: RunId, now: datetime) -> RunRequested:
    """The event a run-now command becomes."""
    return _requested(
        RunRequestedData(
            run_id=str(run_id),
            job=command.data.job,
            trigger=command.data.trigger,
            requested_by=command.data.requested_by,
            requested_at=now,
        ),
        now,
    )


def scheduled_run_requested(
    job: JobSnapshot,
    run_id: RunId,
    now: datetime,
    *,
    slot: datetime | None,
    trigger: Trigger = Trigger.SCHEDULED,
    params: Mapping[str, str] | None = None,
    fire_at: datetime | None = None,
) -> RunRequested:
    """A run born from a schedule slot (due at `fire_at`: the slot plus the spread offset) or a trigger."""
    return _requested(
        RunRequestedData(
            run_id=str(run_id),
            job=job,
            trigger=trigger,
            requested_by="scheduler" if trigger == Trigger.SCHEDULED else "trigger",
            requested_at=now,
            slot=slot,
            fire_at=fire_at or slot,
            trigger_params=dict(params or {}),
        ),
        now,
    )


def member_run_requested(
    job: JobSnapshot,
    run_id: RunId,
    now: datetime,
    *,
    group_run_id: str,
    group_id: int,
    group_name: str,
    requested_by: str,
    slot: datetime | None = None,
    params: Mapping[str, str] | None = None,
    fire_at: datetime | None = None,
) -> RunRequested:
    """A member job's run inside a group run (trigger "group")."""
    return _requested(
        RunRequestedData(
            run_id=str(run_id),
            job=job,
            trigger=Trigger.GROUP,
            requested_by=requested_by,
            requested_at=now,
            slot=slot,
            fire_at=fire_at or slot,
            group_run_id=group_run_id,
            group_id=group_id,
            group_name=group_name,
            trigger_params=dict(params or {}),
        ),
        now,
    )


def build_group_started(
    group_run_id: str, group_id: int, name: str, job_ids: tuple[int, ...], trigger: Trigger, now: datetime
) -> GroupRunStarted:
    return GroupRunStarted(
        id=f"group-started-{group_run_id}",
        source=SOURCE,
        subject=group_run_id,
        time=now,
        data=GroupRunStartedData(
            group_run_id=group_run_id,
            group_id=group_id,
            group_name=name,
            job_ids=job_ids,
            trigger=trigger,
            started_at=now,
        ),
    )


def build_group_finished(
    group_run_id: str,
    group_id: int,
    status: RunStatus,
    member_run_ids: tuple[str, ...],
    now: datetime,
    error: str | None = None,
) -> GroupRunFinished:
    return GroupRunFinished(
        id=f"group-finished-{group_run_id}",
        source=SOURCE,
        subject=group_run_id,
        time=now,
        data=GroupRunFinishedData(
            group_run_id=group_run_id,
            group_id=group_id,
            status=status,
            member_run_ids=member_run_ids,
            finished_at=now,
            error=error,
        ),
    )
