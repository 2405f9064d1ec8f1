"""Message contracts: one module per family. Re-exported here for convenience."""

from shared.contracts.catalog import Expire, GroupChanged, GroupDeleted, JobChanged, JobDeleted
from shared.contracts.envelope import Envelope
from shared.contracts.groups import GroupRunFinished, GroupRunStarted, RunGroup, StopGroupRun
from shared.contracts.jobs import ExportSpec, ImportSpec, JobSnapshot, JobType
from shared.contracts.runs import (
    RunFinished,
    RunJob,
    RunJobReply,
    RunLog,
    RunProgress,
    RunRequested,
    RunStarted,
    RunStatus,
    StopRun,
    Trigger,
)
from shared.contracts.triggers import TriggerFired

ALL_MESSAGES: tuple[type[Envelope], ...] = (
    RunJob,
    StopRun,
    RunRequested,
    RunStarted,
    RunProgress,
    RunLog,
    RunFinished,
    JobChanged,
    JobDeleted,
    GroupChanged,
    GroupDeleted,
    Expire,
    RunGroup,
    StopGroupRun,
    GroupRunStarted,
    GroupRunFinished,
    TriggerFired,
)

__all__ = [
    "ALL_MESSAGES",
    "Envelope",
    "Expire",
    "ExportSpec",
    "GroupChanged",
    "GroupDeleted",
    "GroupRunFinished",
    "GroupRunStarted",
    "ImportSpec",
    "JobChanged",
    "JobDeleted",
    "JobSnapshot",
    "JobType",
    "RunFinished",
    "RunGroup",
    "RunJob",
    "RunJobReply",
    "RunLog",
    "RunProgress",
    "RunRequested",
    "RunStarted",
    "RunStatus",
    "StopGroupRun",
    "StopRun",
    "Trigger",
    "TriggerFired",
]
