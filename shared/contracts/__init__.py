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
    "PUBLIC_EVENTS",
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

# What other systems may subscribe to, e.g. to chain their work after Connect's (docs/events.md):
# within a version these only gain optional fields (tests/unit/test_public_events.py checks it).
PUBLIC_EVENTS: tuple[type[Envelope], ...] = (RunFinished, GroupRunFinished)

MESSAGE_TYPES: dict[str, type[Envelope]] = {cls.model_fields["type"].default: cls for cls in ALL_MESSAGES}


def parse_message(body: str | bytes) -> Envelope:
    """Any Connect message from its JSON, typed by its `type` attribute."""
    probe = Envelope.model_validate_json(body)
    return MESSAGE_TYPES[probe.type].model_validate_json(body)
