"""Catalog change events: the scheduler follows them to keep its schedule state current."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, Field

from shared.contracts.envelope import Envelope, Frozen
from shared.contracts.jobs import JobSnapshot, OnDemandSchedule, Schedule


class JobChangedData(Frozen):
    job: JobSnapshot
    active: bool


class JobChanged(Envelope):
    routing_key: ClassVar[str] = "catalog.job.changed"
    type: Literal["connect.catalog.job.changed.v1"] = "connect.catalog.job.changed.v1"
    data: JobChangedData


class JobDeletedData(Frozen):
    job_id: int = Field(ge=1)


class JobDeleted(Envelope):
    routing_key: ClassVar[str] = "catalog.job.deleted"
    type: Literal["connect.catalog.job.deleted.v1"] = "connect.catalog.job.deleted.v1"
    data: JobDeletedData


class GroupChangedData(Frozen):
    group_id: int = Field(ge=1)
    name: str
    job_ids: tuple[int, ...] = Field(description="Member jobs in run order.")
    active: bool
    schedule: Schedule = OnDemandSchedule()
    expires_at: AwareDatetime | None = None
    continue_on_failure: bool = False


class GroupChanged(Envelope):
    routing_key: ClassVar[str] = "catalog.group.changed"
    type: Literal["connect.catalog.group.changed.v1"] = "connect.catalog.group.changed.v1"
    data: GroupChangedData


class GroupDeletedData(Frozen):
    group_id: int = Field(ge=1)


class GroupDeleted(Envelope):
    routing_key: ClassVar[str] = "catalog.group.deleted"
    type: Literal["connect.catalog.group.deleted.v1"] = "connect.catalog.group.deleted.v1"
    data: GroupDeletedData


class ExpireData(Frozen):
    kind: Literal["job", "group"]
    id: int = Field(ge=1)


class Expire(Envelope):
    """Command from the scheduler to the catalog: the expiration date passed, delete the job or group.

    Loaded records stay; the catalog deletes only the definition (and announces it as usual).
    """

    routing_key: ClassVar[str] = "catalog.expire"
    exchange_kind: ClassVar[str] = "commands"
    type: Literal["connect.catalog.expire.v1"] = "connect.catalog.expire.v1"
    data: ExpireData
