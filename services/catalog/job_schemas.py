"""Request and response bodies of the jobs API (the guide's All jobs tab and its actions)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StrictInt, field_validator

from services.catalog.schemas import NAME, Request, Response
from shared.catalog_records import NotificationRule
from shared.contracts.jobs import JobSpec, JobType, OnDemandSchedule, Schedule

ScheduleType = Literal["one_time", "recurring", "on_demand", "on_event"]


IMPORT_EXAMPLE: dict[str, Any] = {
    "name": "Nightly contacts",
    "spec": {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": 1, "path": "daily/contacts_*.csv", "pick": "newest"},
        "format": {"delimiter": ",", "quote": '"', "header": True, "encoding": "utf-8"},
        "mapping": [{"column": "email", "field": "EMAIL_ADDRESS_"}, {"column": "city", "field": "city"}],
        "target": {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"],
                   "insert_on_no_match": True, "update_on_match": "replace_all"},
        "guards": {"max_reject_percent": 5},
    },
    "schedule": {"type": "recurring", "rule": {"kind": "daily", "at": "02:30:00"}, "timezone": "Europe/Paris"},
}  # fmt: skip


class JobCreate(Request):
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [IMPORT_EXAMPLE]}
    )

    name: str = NAME
    spec: JobSpec
    schedule: Schedule = OnDemandSchedule()
    expires_at: AwareDatetime | None = Field(
        default=None, description="Expiration date: the job is deleted then."
    )
    active: bool = True
    notifications: list[NotificationRule] = Field(
        default=[], max_length=20, description="Which final outcomes notify which channels."
    )


class JobUpdate(Request):
    """Edit (PUT): the whole editable job; `version` must be the one read (optimistic concurrency)."""

    version: int = Field(
        ge=1, description="The version you edited; a newer one means someone else saved first."
    )
    name: str = NAME
    spec: JobSpec
    schedule: Schedule = OnDemandSchedule()
    expires_at: AwareDatetime | None = None
    notifications: list[NotificationRule] = Field(
        default=[], max_length=20, description="Which final outcomes notify which channels."
    )


class JobPatch(Request):
    """Edit (PATCH): only the fields given change."""

    version: int = Field(ge=1)
    name: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    spec: JobSpec | None = None
    schedule: Schedule | None = None
    expires_at: AwareDatetime | None = None
    notifications: list[NotificationRule] | None = Field(default=None, max_length=20)


class JobCopy(Request):
    name: str = NAME


class JobsDelete(Request):
    """Delete several jobs at once (the guide's shift-click): all are deleted, or none."""

    ids: list[int] = Field(min_length=1, max_length=500)
    confirm: bool = Field(default=False, description="Must be true: deletion needs confirmation.")


MAX_RUN_TOGETHER = 5  # jobs one bulk trigger may start


class JobsRun(Request):
    """Run now for several jobs at once (Responsys's bulk trigger): each is checked on its own."""

    ids: list[Annotated[StrictInt, Field(ge=1, le=2**62)]] = Field(
        min_length=1, max_length=MAX_RUN_TOGETHER, description="1 to 5 distinct job IDs.", examples=[[12, 13]]
    )

    @field_validator("ids")
    @classmethod
    def distinct(cls, ids: list[int]) -> list[int]:
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"each job may appear once; repeated: {', '.join(map(str, repeated))}")
        return ids


class RunRefusal(Response):
    code: str = Field(description="`conflict`, `not_found`, `retryable` (the scheduler did not answer) …")
    message: str


class JobRunResult(Response):
    """One job's outcome: `run_id` when the run was started, else `error` with the refusal's reason."""

    job_id: int
    run_id: str | None = Field(default=None, examples=["12.3"])
    error: RunRefusal | None = None


class JobsRunResults(Response):
    results: list[JobRunResult] = Field(description="One per requested job, in the order given.")


class JobView(Response):
    id: int = Field(description="Job ID: auto-assigned.")
    group_id: int | None = None
    group: str | None = Field(default=None, description="Name of the group the job is in, if any.")
    name: str
    job_type: JobType = Field(description="Job Type: import or export.")
    created_at: datetime = Field(description="Created on.")
    created_by: str = Field(description="By: the principal who created the job.")
    state: Literal["active", "inactive"] = Field(description="Job state.")
    next_run: datetime | None = Field(default=None, description="Next run; blank for non-recurring jobs.")
    previous_run: datetime | None = Field(
        default=None, description="Previous scheduled run; blank until it ran."
    )
    schedule_type: ScheduleType
    expiration_date: datetime | None = Field(default=None, description="The job is deleted on this date.")
    partner_feed: bool = Field(description="Partner-feed (Omniture) job: no Run now, no copy.")
    schedule: Schedule
    spec: JobSpec
    next_source_path: str | None = Field(
        default=None,
        examples=["in/contacts_20261208.csv"],
        description="An SFTP import with date tokens: the path its next run reads (at its next fire, "
        "or now for a job without one); null otherwise.",
    )
    notifications: list[NotificationRule] = []
    version: int
    updated_at: datetime | None = None
    updated_by: str | None = None


class DeletedJobs(Response):
    deleted: list[int]


class FirePreview(Response):
    local: datetime = Field(description="Fire time in the schedule's zone.")
    utc: datetime
    dst_change: bool = Field(description="The slot falls on a daylight-saving change.")
    slot: datetime | None = Field(
        default=None,
        description="The nominal slot (UTC), the run's identity (its `slot`); `utc` is when it fires: "
        "the slot plus the owner's spread offset (`schedule.spread_minutes`).",
    )
    source_path: str | None = Field(
        default=None,
        description="An SFTP import with date tokens: the path this fire reads (its slot's date).",
    )


class SchedulePreview(Response):
    timezone: str
    fires: list[FirePreview]
    spread_offset_seconds: int = Field(
        default=0, description="This job's or group's stable offset after each slot (0: no spread)."
    )
    next_from: datetime | None = Field(
        default=None,
        description="Pass as `from` for the next page; null when the schedule has no more fires.",
    )
