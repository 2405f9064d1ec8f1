"""Scheduling rules, free of I/O."""

from __future__ import annotations

from datetime import datetime

from shared.contracts.runs import RunJob, RunRequested, RunRequestedData
from shared.runid import RunId


def next_run_id(job_id: int, last_number: int) -> RunId:
    """RunID counts up per job from 1."""
    return RunId(job_id, last_number + 1)


def build_run_requested(command: RunJob, run_id: RunId, now: datetime) -> RunRequested:
    """The event a run-now command becomes; its id derives from the run id, so a resend is recognisable."""
    return RunRequested(
        id=f"run-requested-{run_id}",
        source="connect/scheduler",
        subject=str(run_id),
        time=now,
        data=RunRequestedData(
            run_id=str(run_id),
            job=command.data.job,
            trigger=command.data.trigger,
            requested_by=command.data.requested_by,
            requested_at=now,
        ),
    )
