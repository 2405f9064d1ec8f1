"""The run record and the group-run record: written by the logsink, read by the catalog (issue #15).

One document per run in `LogsinkCollections.RUNS` (`_id`: `JobID.RunID`) and one per group run in
`LogsinkCollections.GROUP_RUNS` (`_id`: `GroupID.RunID`). The logsink writes a record a piece at a
time, one event's change after another (guarded updates, never whole documents), keyed by the names
of `RunField`, `GroupRunField` and `MemberField`; the catalog builds its queries and sorts from the
same names and reads a document as a `RunRecord` or a `GroupRunRecord` (`from_document`), whose
fields are those names (`tests/unit/test_run_records.py` holds the two to each other and to every
document the logsink writes).

Values are stored as the events carry them: enums by their value, `counts` as `RunCounts`' fields,
`progress` as the latest `RunProgressData` without its run id. Any field may be missing (a record
is filled in as its events arrive, in any order), but a run record always has its `job_id`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.contracts.jobs import JobType
from shared.contracts.runs import (
    TERMINAL_STATUSES,
    RejectSample,
    RunCounts,
    RunProgressData,
    RunStatus,
    Trigger,
)

Document = dict[str, Any]

# The statuses as stored: those a record ends with, and those of a run not ended yet.
TERMINAL: Final = tuple(status.value for status in TERMINAL_STATUSES)
IN_FLIGHT: Final = tuple(status.value for status in RunStatus if not status.terminal)


class RunField:
    """The fields of a run record."""

    ID: Final = "_id"  # JobID.RunID
    RUN_ID: Final = "run_id"  # the id again, written with the job's fields (readers take `_id`)
    JOB_ID: Final = "job_id"
    RUN_NUMBER: Final = "run_number"  # the RunID part, to sort by
    JOB_NAME: Final = "job_name"
    JOB_TYPE: Final = "job_type"
    TRIGGER: Final = "trigger"
    SLOT: Final = "slot"  # the schedule slot of a scheduled run
    GROUP_RUN_ID: Final = "group_run_id"
    GROUP_ID: Final = "group_id"
    GROUP_NAME: Final = "group_name"
    STATUS: Final = "status"
    REQUESTED_AT: Final = "requested_at"
    REQUESTED_BY: Final = "requested_by"
    EXECUTOR: Final = "executor"  # the last attempt's
    ATTEMPT: Final = "attempt"
    STARTED_AT: Final = "started_at"  # the first attempt's
    PROGRESS: Final = "progress"  # the latest snapshot (shown while the run is not terminal)
    PROGRESS_AT: Final = "progress.at"  # its time, a path into the record
    COUNTS: Final = "counts"
    FINISHED_AT: Final = "finished_at"
    DURATION_SECONDS: Final = "duration_seconds"
    ERROR: Final = "error"
    REJECTS_FILE: Final = "rejects_file"
    FIRST_REJECTS: Final = "first_rejects"  # a dry run's first rejected records
    LAST_LOG_SEQ: Final = "last_log_seq"
    FINISHED_EVENT_ID: Final = "finished_event_id"


class GroupRunField:
    """The fields of a group-run record."""

    ID: Final = "_id"  # GroupID.RunID
    GROUP_RUN_ID: Final = "group_run_id"  # the id again (readers take `_id`)
    RUN_NUMBER: Final = "run_number"
    GROUP_ID: Final = "group_id"
    GROUP_NAME: Final = "group_name"
    TRIGGER: Final = "trigger"
    STATUS: Final = "status"
    JOB_IDS: Final = "job_ids"  # the group's jobs in order, when the run started
    MEMBERS: Final = "members"  # the member runs requested so far (`MemberField`), in no order
    STARTED_AT: Final = "started_at"
    MEMBER_RUN_IDS: Final = "member_run_ids"  # the member runs in order, once the group run finished
    FINISHED_AT: Final = "finished_at"
    ERROR: Final = "error"
    FINISHED_EVENT_ID: Final = "finished_event_id"


class MemberField:
    """The fields of an entry of a group run's `members`."""

    RUN_ID: Final = "run_id"
    JOB_ID: Final = "job_id"
    REQUESTED_AT: Final = "requested_at"


def run_number(run_id: str) -> int:
    """The RunID part of `JobID.RunID` (or of `GroupID.RunID`)."""
    return int(run_id.split(".", 1)[1])


def duration_seconds(started_at: datetime, finished_at: datetime) -> float:
    """How long a run took; never negative (the clocks of two machines may disagree)."""
    return max((finished_at - started_at).total_seconds(), 0.0)


def progress_snapshot(data: RunProgressData) -> Document:
    """A progress event as its run record holds it (`RunField.PROGRESS`)."""
    return data.model_dump(mode="python", exclude={"run_id"})


class _Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ProgressSnapshot(_Stored):
    """The latest progress of a run (`progress_snapshot`)."""

    records_read: int
    records_written: int
    records_rejected: int
    bytes_read: int
    bytes_total: int | None = None
    records_per_second: float
    at: datetime


class RunRecord(_Stored):
    """A run's record (`RunField`), as every reader sees it."""

    run_id: str = Field(alias=RunField.ID)
    job_id: int
    run_number: int | None = None
    job_name: str | None = None
    job_type: JobType | None = None
    trigger: Trigger | None = None
    slot: datetime | None = None
    group_run_id: str | None = None
    group_id: int | None = None
    group_name: str | None = None
    status: RunStatus = RunStatus.QUEUED
    requested_at: datetime | None = None
    requested_by: str | None = None
    executor: str | None = None
    attempt: int | None = None
    started_at: datetime | None = None
    progress: ProgressSnapshot | None = None
    counts: RunCounts = RunCounts()
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    rejects_file: str | None = None
    first_rejects: list[RejectSample] = []
    last_log_seq: int | None = None
    finished_event_id: str | None = None

    @classmethod
    def from_document(cls, doc: Document) -> RunRecord:
        return cls.model_validate(doc)

    @property
    def ended(self) -> bool:
        """Terminal: its status, counts and log will not change."""
        return self.status.terminal

    @field_validator("counts", mode="before")
    @classmethod
    def _no_counts(cls, value: Any) -> Any:  # stored as null: none counted, as readers always took it
        return {} if value is None else value


class GroupMember(_Stored):
    """A member run as its group-run record holds it (`MemberField`)."""

    run_id: str
    job_id: int
    requested_at: datetime | None = None


class GroupRunRecord(_Stored):
    """A group run's record (`GroupRunField`), as every reader sees it."""

    group_run_id: str = Field(alias=GroupRunField.ID)
    run_number: int | None = None
    group_id: int | None = None
    group_name: str | None = None
    trigger: Trigger | None = None
    status: RunStatus = RunStatus.RUNNING
    job_ids: list[int] = []
    members: list[GroupMember] = []
    started_at: datetime | None = None
    member_run_ids: list[str] = []
    finished_at: datetime | None = None
    error: str | None = None
    finished_event_id: str | None = None

    @classmethod
    def from_document(cls, doc: Document) -> GroupRunRecord:
        return cls.model_validate(doc)

    @property
    def ended(self) -> bool:
        """Terminal: its status will not change."""
        return self.status.terminal

    @property
    def duration_seconds(self) -> float | None:
        """Not stored: from the first start to the end, once both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return duration_seconds(self.started_at, self.finished_at)

    @field_validator("job_ids", "members", "member_run_ids", mode="before")
    @classmethod
    def _no_list(cls, value: Any) -> Any:  # stored as null: empty, as readers always took it
        return [] if value is None else value
