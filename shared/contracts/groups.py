"""Group runs: jobs run strictly in the group's order, each after the previous one succeeded."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.envelope import Envelope, Frozen
from shared.contracts.runs import RUN_ID_PATTERN, RequestCommand, RunStatus, Trigger


class RunGroupData(Frozen):
    group_id: int = Field(ge=1)
    trigger: Trigger = Trigger.ON_DEMAND
    requested_by: str


class RunGroup(RequestCommand):
    """Command to the scheduler (request/reply, answered with `RunJobReply` carrying `GroupID.RunID`)."""

    routing_key: ClassVar[str] = "scheduler.run-group"
    exchange_kind: ClassVar[str] = "commands"
    type: Literal["connect.group.run.v1"] = "connect.group.run.v1"
    data: RunGroupData


class StopGroupRunData(Frozen):
    group_run_id: str = Field(pattern=RUN_ID_PATTERN)
    requested_by: str


class StopGroupRun(Envelope):
    """Command to the scheduler: stop the current member and request no further ones."""

    routing_key: ClassVar[str] = "scheduler.stop-group-run"
    exchange_kind: ClassVar[str] = "commands"
    type: Literal["connect.group.stop.v1"] = "connect.group.stop.v1"
    data: StopGroupRunData


class GroupRunStartedData(Frozen):
    group_run_id: str = Field(pattern=RUN_ID_PATTERN)
    group_id: int
    group_name: str
    job_ids: tuple[int, ...]
    trigger: Trigger
    started_at: datetime


class GroupRunStarted(Envelope):
    routing_key: ClassVar[str] = "group.started"
    type: Literal["connect.group.started.v1"] = "connect.group.started.v1"
    data: GroupRunStartedData


class GroupRunFinishedData(Frozen):
    group_run_id: str = Field(pattern=RUN_ID_PATTERN)
    group_id: int
    status: RunStatus
    member_run_ids: tuple[str, ...] = Field(description="Member runs in order, `JobID.RunID`.")
    finished_at: datetime
    error: str | None = None


class GroupRunFinished(Envelope):
    routing_key: ClassVar[str] = "group.finished"
    type: Literal["connect.group.finished.v1"] = "connect.group.finished.v1"
    data: GroupRunFinishedData
