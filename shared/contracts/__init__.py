"""Message contracts: one module per family. Re-exported here for convenience."""

from shared.contracts.catalog import GroupChanged, GroupDeleted, JobChanged, JobDeleted
from shared.contracts.envelope import Envelope
from shared.contracts.jobs import ImportSpec, JobSnapshot, JobType
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
)

__all__ = [
    "ALL_MESSAGES",
    "Envelope",
    "GroupChanged",
    "GroupDeleted",
    "ImportSpec",
    "JobChanged",
    "JobDeleted",
    "JobSnapshot",
    "JobType",
    "RunFinished",
    "RunJob",
    "RunJobReply",
    "RunLog",
    "RunProgress",
    "RunRequested",
    "RunStarted",
    "RunStatus",
    "StopRun",
    "Trigger",
]
