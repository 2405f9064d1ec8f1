"""Catalog change events: the scheduler follows them to keep its schedule state current."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.envelope import Envelope, Frozen
from shared.contracts.jobs import JobSnapshot


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
    job_ids: tuple[int, ...]
    active: bool


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
