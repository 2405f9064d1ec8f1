"""Run lifecycle messages: commands (`RunJob`, `StopRun`) and events (`RunRequested` … `RunFinished`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from shared.contracts.envelope import Envelope, Frozen
from shared.contracts.jobs import JobSnapshot, JobType

RUN_ID_PATTERN = r"^[1-9][0-9]*\.[1-9][0-9]*$"


class Trigger(StrEnum):
    SCHEDULED = "scheduled"
    ON_DEMAND = "on_demand"
    GROUP = "group"
    EVENT = "event"
    DRY_RUN = "dry_run"  # reads and checks, writes nothing; never notifies


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    STOPPED = "stopped"
    SKIPPED = "skipped"  # nothing to do (an empty file with on_empty: skip): not a failure, nothing written

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.STOPPED, RunStatus.SKIPPED}
)


class RunCounts(Frozen):
    """A completed import has `read = inserted + updated + unchanged + rejected`."""

    read: int = Field(default=0, ge=0)
    inserted: int = Field(default=0, ge=0)
    updated: int = Field(default=0, ge=0)
    rejected: int = Field(default=0, ge=0)
    unchanged: int = Field(default=0, ge=0, description="Matched rows left as they were (no_update).")
    skipped: int = Field(default=0, ge=0, description="Blank lines: not records, not in `read`.")


# --- commands -------------------------------------------------------------------------------------


class RunJobData(Frozen):
    job: JobSnapshot
    trigger: Trigger = Trigger.ON_DEMAND
    requested_by: str


class RequestCommand(Envelope):
    """A command whose caller waits for the answer: it carries the instant the caller gives up."""

    deadline: AwareDatetime | None = Field(
        default=None,
        description="When the caller stops waiting (UTC, its clock); a command received later is not "
        "carried out. Absent: no deadline.",
    )


class RunJob(RequestCommand):
    """Command to the scheduler: allocate a run of this job now (request/reply)."""

    routing_key: ClassVar[str] = "scheduler.run-job"
    exchange_kind: ClassVar[str] = "commands"
    type: Literal["connect.run.job.v1"] = "connect.run.job.v1"
    data: RunJobData


class RunJobReply(Frozen):
    """The scheduler's answer to `RunJob`: the new run id, or why there is none."""

    accepted: bool
    run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN)
    reason: str | None = None
    expired: bool = Field(default=False, description="Not carried out: it arrived past its deadline.")


class StopRunData(Frozen):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    requested_by: str


class StopRun(Envelope):
    """Broadcast to every executor: stop this run at the next safe point."""

    exchange_kind: ClassVar[str] = "control"

    type: Literal["connect.run.stop.v1"] = "connect.run.stop.v1"
    data: StopRunData


# --- events ---------------------------------------------------------------------------------------


class RunRequestedData(Frozen):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    job: JobSnapshot
    trigger: Trigger
    requested_by: str
    requested_at: datetime
    slot: datetime | None = Field(default=None, description="The schedule slot this run fires, if scheduled.")
    fire_at: datetime | None = Field(
        default=None,
        description="When the slot was due to fire: the slot plus the owner's spread offset "
        "(`schedule.spread_minutes`); the scheduler's fire lag is counted from it.",
    )
    group_run_id: str | None = Field(
        default=None, pattern=RUN_ID_PATTERN, description="`GroupID.RunID`, if any."
    )
    group_id: int | None = None
    group_name: str | None = None
    trigger_params: dict[str, str] = Field(default_factory=dict, description="Parameters of a trigger event.")


class RunRequested(Envelope):
    routing_key: ClassVar[str] = "run.requested"
    type: Literal["connect.run.requested.v1"] = "connect.run.requested.v1"
    data: RunRequestedData


class RunStartedData(Frozen):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    job_id: int
    job_name: str
    job_type: JobType
    trigger: Trigger
    executor: str
    attempt: int = Field(ge=1)
    started_at: datetime


class RunStarted(Envelope):
    routing_key: ClassVar[str] = "run.started"
    type: Literal["connect.run.started.v1"] = "connect.run.started.v1"
    data: RunStartedData


class RunProgressData(Frozen):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    records_read: int = Field(ge=0)
    records_written: int = Field(ge=0)
    records_rejected: int = Field(ge=0)
    bytes_read: int = Field(ge=0)
    bytes_total: int | None = Field(default=None, ge=0)
    records_per_second: float = Field(ge=0)
    at: datetime


class RunProgress(Envelope):
    routing_key: ClassVar[str] = "run.progress"
    type: Literal["connect.run.progress.v1"] = "connect.run.progress.v1"
    data: RunProgressData


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class RunLogData(Frozen):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    seq: int = Field(ge=1, description="Numbered from 1 per run, without gaps, across take-overs.")
    level: LogLevel = LogLevel.INFO
    message: str
    fields: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    at: datetime


class RunLog(Envelope):
    routing_key: ClassVar[str] = "run.log"
    type: Literal["connect.run.log.v1"] = "connect.run.log.v1"
    data: RunLogData


MAX_FIRST_REJECTS = 20  # rejects a dry run lists in its result


class RejectSample(Frozen):
    """A rejected record as a dry run lists it: where it is in the source and why."""

    file: int = Field(default=0, ge=0, description="Which file of a multi-file source, from 0.")
    line: int = Field(ge=0)
    field: str
    reason: str


class RunFinishedData(Frozen):
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    job_id: int
    status: RunStatus
    counts: RunCounts
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    rejects_file: str | None = None
    last_log_seq: int = Field(default=0, ge=0)
    timed_out: bool = Field(default=False, description="Stopped by the job's max_duration.")
    dry_run: bool = Field(
        default=False,
        description="A dry run: the counts are what a real run would insert, update, leave and reject; "
        "nothing was written.",
    )
    first_rejects: tuple[RejectSample, ...] = Field(
        default=(),
        max_length=MAX_FIRST_REJECTS,
        description="A dry run's first rejected records, in file order (at most 20).",
    )
    notify: bool = Field(
        default=True,
        description="Whether the logsink looks up the job's notification rules: false when the job had "
        "none as the run was requested, and for dry runs (saves a read per run).",
    )


class RunFinished(Envelope):
    routing_key: ClassVar[str] = "run.finished"
    type: Literal["connect.run.finished.v1"] = "connect.run.finished.v1"
    data: RunFinishedData
