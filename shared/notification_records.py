"""A notification: written and delivered by the logsink, read by the catalog (issue #16).

One document per (run, rule, channel) in `LogsinkCollections.NOTIFICATIONS`, with the deterministic
id `notification_id(...)`: the logsink inserts it once the run's (or group run's) final record is
written, and an insert that meets the same id does nothing, so a redelivered `RunFinished` or a
crash between the record and the insert neither duplicates nor loses it. The same id is the
webhook's `webhook-id` and the mail's `Message-ID` local part, so a receiver can de-duplicate a
delivery repeated after a crash.

The catalog shows them (`GET /api/v1/runs/{id}/notifications`, `GET /api/v1/group-runs/{id}/notifications`)
from the names of `NotificationField`, read as a `NotificationRecord`; no secret is ever stored here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

Document = dict[str, Any]
OwnerKind = Literal["job", "group"]


class NotificationStatus(StrEnum):
    PENDING = "pending"  # waiting for its first or next attempt
    SENT = "sent"
    FAILED = "failed"  # given up after the retry budget, or refused for good (e.g. 4xx, bad address)


class NotificationField:
    ID: Final = "_id"  # notification_id(...)
    RUN_ID: Final = "run_id"  # JobID.RunID, or GroupID.RunID when owner_kind is "group"
    OWNER_KIND: Final = "owner_kind"
    OWNER_ID: Final = "owner_id"  # the job's or group's id
    RULE: Final = "rule"  # the rule's index in the owner's `notifications`
    CHANNEL_ID: Final = "channel_id"
    CHANNEL_KIND: Final = "channel_kind"  # "smtp" | "webhook" | "unknown" (channel deleted meanwhile)
    CHANNEL_NAME: Final = "channel_name"
    RECIPIENT: Final = "recipient"  # the mail's addresses, comma-separated, or the webhook URL
    OUTCOME: Final = "outcome"  # the run's outcome that matched the rule (failed, recovered, ...)
    STATUS: Final = "status"
    ATTEMPTS: Final = "attempts"
    LAST_ERROR: Final = "last_error"  # redacted: never a secret or a token
    CREATED_AT: Final = "created_at"
    NEXT_ATTEMPT_AT: Final = "next_attempt_at"
    SENT_AT: Final = "sent_at"
    CLAIMED_UNTIL: Final = "claimed_until"  # a sender's lease on a pending notification
    PAYLOAD: Final = (
        "payload"  # the webhook's JSON body, built once: each retry sends the same (never a secret)
    )


def notification_id(owner_kind: OwnerKind, run_id: str, rule: int, channel_id: int) -> str:
    """Stable across redeliveries and crashes: the same run, rule and channel give the same id."""
    prefix = "group-run" if owner_kind == "group" else "run"
    return f"{prefix}-{run_id}-{rule}-{channel_id}"


class NotificationRecord(BaseModel):
    """A notification as the catalog shows it."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    id: str
    run_id: str
    owner_kind: OwnerKind
    owner_id: int
    rule: int
    channel_id: int
    channel_kind: Literal["smtp", "webhook", "unknown"]  # unknown: the channel was deleted meanwhile
    channel_name: str
    recipient: str
    outcome: str
    status: NotificationStatus
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None

    @classmethod
    def from_document(cls, doc: Document) -> NotificationRecord:
        return cls.model_validate({**doc, "id": doc[NotificationField.ID]})
