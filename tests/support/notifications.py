"""Notification documents as the logsink stores them (`shared.notification_records`), written straight
into its collection: the catalog's read side is tested without the logsink's delivery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.collections import LogsinkCollections
from shared.mongo import MongoClient
from shared.notification_records import NotificationField as F
from shared.notification_records import NotificationStatus, OwnerKind, notification_id

Document = dict[str, Any]
AT = datetime(2026, 3, 1, 2, 0, 5, tzinfo=UTC)


def notification(
    run_id: str,
    *,
    rule: int = 0,
    channel_id: int = 1,
    owner_kind: OwnerKind = "job",
    kind: str = "webhook",
    status: NotificationStatus = NotificationStatus.SENT,
    attempts: int = 1,
    last_error: str | None = None,
    **fields: Any,
) -> Document:
    """One stored notification; `fields` (the `NotificationField` names) override the defaults."""
    sent = status is NotificationStatus.SENT
    doc: Document = {
        F.ID: notification_id(owner_kind, run_id, rule, channel_id),
        F.RUN_ID: run_id,
        F.OWNER_KIND: owner_kind,
        F.OWNER_ID: int(run_id.split(".")[0]),
        F.RULE: rule,
        F.CHANNEL_ID: channel_id,
        F.CHANNEL_KIND: kind,
        F.CHANNEL_NAME: f"{kind} {channel_id}",
        F.RECIPIENT: "https://hooks.example.com/connect" if kind == "webhook" else "ops@example.com",
        F.OUTCOME: "failed",
        F.STATUS: status.value,
        F.ATTEMPTS: attempts,
        F.LAST_ERROR: last_error,
        F.CREATED_AT: AT,
        F.NEXT_ATTEMPT_AT: None if sent or status is NotificationStatus.FAILED else AT,
        F.SENT_AT: AT if sent else None,
        F.CLAIMED_UNTIL: None,
    }
    return doc | fields


async def store_notifications(mongo: MongoClient, logsink_db: str, docs: list[Document]) -> None:
    await mongo[logsink_db][LogsinkCollections.NOTIFICATIONS].insert_many(docs)
