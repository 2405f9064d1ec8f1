"""Request and response bodies of the groups API (the guide's Groups tab)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field

from services.catalog.job_schemas import ScheduleType
from services.catalog.schemas import NAME, Request, Response
from shared.catalog_records import NotificationRule
from shared.contracts.jobs import OnDemandSchedule, Schedule

# A job id as the database can store it (a larger one failed the lookup with a 500).
MemberId = Annotated[int, Field(ge=1, le=2**62)]


class GroupCreate(Request):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"name": "Nightly load", "job_ids": [3, 4, 7], "continue_on_failure": False}]
        },
    )

    name: str = NAME
    job_ids: list[MemberId] = Field(min_length=1, max_length=100, description="Member jobs in run order.")
    schedule: Schedule = OnDemandSchedule()
    expires_at: AwareDatetime | None = None
    continue_on_failure: bool = Field(
        default=False, description="Default: a failed step stops the group run."
    )
    active: bool = True
    notifications: list[NotificationRule] = Field(
        default=[],
        max_length=20,
        description="Notify once, after the group run ends, naming each member's outcome.",
    )


class GroupUpdate(Request):
    """Edit (PUT) with optimistic concurrency; reorder members by giving `job_ids` in the new order."""

    version: int = Field(ge=1)
    name: str = NAME
    job_ids: list[MemberId] = Field(min_length=1, max_length=100)
    schedule: Schedule = OnDemandSchedule()
    expires_at: AwareDatetime | None = None
    continue_on_failure: bool = False
    notifications: list[NotificationRule] = Field(
        default=[], max_length=20, description="Which final outcomes notify which channels."
    )


class GroupMember(Response):
    id: int
    name: str


class GroupView(Response):
    id: int = Field(description="Group ID: auto-assigned.")
    created_at: datetime = Field(description="Created on.")
    created_by: str = Field(description="By.")
    name: str
    next_run: datetime | None = Field(default=None, description="Next scheduled run.")
    previous_run: datetime | None = Field(default=None, description="When the group last ran on schedule.")
    schedule_type: ScheduleType
    expiration_date: datetime | None = Field(default=None, description="The group is deleted on this date.")
    state: Literal["active", "inactive"]
    jobs: list[GroupMember] = Field(description="Members in run order.")
    continue_on_failure: bool
    schedule: Schedule
    notifications: list[NotificationRule] = []
    version: int


class GroupRunAccepted(Response):
    group_run_id: str = Field(description="`GroupID.RunID` of the new group run.", examples=["3.7"])
