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
    "MESSAGE_TYPES",
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
    "parse_message",
]

MESSAGE_TYPES: dict[str, type[Envelope]] = {cls.model_fields["type"].default: cls for cls in ALL_MESSAGES}


def parse_message(body: str | bytes) -> Envelope:
    """Any Connect message from its JSON, typed by its `type` attribute."""
    probe = Envelope.model_validate_json(body)
    return MESSAGE_TYPES[probe.type].model_validate_json(body)
