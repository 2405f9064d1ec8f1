"""Group rules, free of I/O: what a stored group is, who may be a member, when Run now is refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.catalog.errors import RunRefused
from shared.catalog_records import NotificationRule
from shared.contracts.jobs import OnDemandSchedule, Schedule, is_expired
from shared.errors import Conflict, NotFound


class StoredGroup(BaseModel):
    """A group as the catalog stores it (collection `groups`): its jobs run in this order."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: int = Field(alias="_id")
    name: str
    job_ids: tuple[int, ...]
    schedule: Schedule = OnDemandSchedule()
    expires_at: datetime | None = None
    continue_on_failure: bool = False
    notifications: tuple[NotificationRule, ...] = ()
    active: bool = True
    version: int = 1
    created_at: datetime
    created_by: str


def check_group_run_now(group: StoredGroup, now: datetime) -> None:
    if not group.active:
        raise RunRefused(f"group {group.id} is inactive; activate it to run it")
    if is_expired(group.expires_at, now):
        raise RunRefused(f"group {group.id} has expired")


def check_members(group_id: int, job_ids: Sequence[int], groups_of_jobs: Mapping[int, int | None]) -> None:
    """A group's jobs: each once, each existing (`groups_of_jobs` holds every existing one with its group),
    none in another group (a job belongs to at most one)."""
    if len(set(job_ids)) != len(job_ids):
        raise Conflict("a job appears twice in the group", field="job_ids")
    missing = sorted(set(job_ids) - set(groups_of_jobs))
    if missing:
        raise NotFound(f"job(s) {', '.join(map(str, missing))} do not exist", field="job_ids")
    taken = [job for job in job_ids if groups_of_jobs[job] not in (None, group_id)]
    if taken:
        raise Conflict(
            f"job(s) {', '.join(map(str, taken))} already belong to another group", field="job_ids"
        )
