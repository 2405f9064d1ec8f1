"""MongoDB adapter of notifications: the logsink's outbox of notifications, and what it reads to make them.

The logsink owns `LogsinkCollections.NOTIFICATIONS`; rules and channels are the catalog's (its jobs,
groups and channels), read here as a read model, as the executor reads connections.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, PyMongoError

from services.logsink.repository import DUPLICATE_KEY, DURABLE
from shared.catalog_records import NotificationChannelRecord, NotificationRule
from shared.collections import CatalogCollections, LogsinkCollections
from shared.contracts.runs import RunStatus, Trigger
from shared.mongo import MongoClient, database_error
from shared.notification_records import NotificationField as F
from shared.notification_records import NotificationStatus
from shared.run_records import TERMINAL, GroupRunField, RunField

Document = dict[str, Any]
NOT_DRY = {"$ne": Trigger.DRY_RUN.value}


class MongoNotifications:
    def __init__(self, client: MongoClient, logsink_db: str, catalog_db: str) -> None:
        logsink, catalog = client[logsink_db], client[catalog_db]
        self.notifications = logsink.get_collection(LogsinkCollections.NOTIFICATIONS, write_concern=DURABLE)
        self.runs = logsink[LogsinkCollections.RUNS]
        self.group_runs = logsink[LogsinkCollections.GROUP_RUNS]
        self.jobs = catalog[CatalogCollections.JOBS]
        self.groups = catalog[CatalogCollections.GROUPS]
        self.channels = catalog[CatalogCollections.NOTIFICATION_CHANNELS]

    async def ensure_indexes(self) -> None:
        # The sender's query (due pending ones) and the catalog's (a run's notifications).
        await self.notifications.create_index([(F.STATUS, 1), (F.NEXT_ATTEMPT_AT, 1)])
        await self.notifications.create_index(
            [(F.RUN_ID, 1), (F.OWNER_KIND, 1), (F.RULE, 1), (F.CHANNEL_ID, 1)]
        )  # by rule then channel, as the catalog lists them

    # --- the read model ------------------------------------------------------------------------

    async def rules(self, owner_kind: str, owner_ids: Iterable[int]) -> dict[int, list[NotificationRule]]:
        """The rules of those jobs (or groups) that have any: one query, only their rules read."""
        ids = sorted(set(owner_ids))
        if not ids:
            return {}
        collection = self.groups if owner_kind == "group" else self.jobs
        query = {"_id": {"$in": ids}, "notifications.0": {"$exists": True}}
        found: dict[int, list[NotificationRule]] = {}
        async for doc in collection.find(query, {"notifications": 1}):
            found[int(doc["_id"])] = [NotificationRule.model_validate(r) for r in doc["notifications"]]
        return found

    async def channels_by_id(self, ids: Iterable[int]) -> dict[int, NotificationChannelRecord]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return {
            int(doc["_id"]): NotificationChannelRecord.model_validate(doc)
            async for doc in self.channels.find({"_id": {"$in": wanted}})
        }

    async def channel(self, channel_id: int) -> NotificationChannelRecord | None:
        doc = await self.channels.find_one({"_id": channel_id})
        return None if doc is None else NotificationChannelRecord.model_validate(doc)

    async def run_records(self, run_ids: Iterable[str]) -> dict[str, Document]:
        wanted = sorted(set(run_ids))
        if not wanted:
            return {}
        return {str(doc["_id"]): doc async for doc in self.runs.find({"_id": {"$in": wanted}})}

    async def group_run_records(self, ids: Iterable[str]) -> dict[str, Document]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return {str(doc["_id"]): doc async for doc in self.group_runs.find({"_id": {"$in": wanted}})}

    async def previous_status(self, owner_kind: str, owner_id: int, run_number: int) -> RunStatus | None:
        """The status of the owner's latest terminal, non-dry, non-skipped run before this one (by run
        number): what `recovered` is judged against."""
        if owner_kind == "group":
            collection, owner, number, status, trigger = (
                self.group_runs, GroupRunField.GROUP_ID, GroupRunField.RUN_NUMBER,
                GroupRunField.STATUS, GroupRunField.TRIGGER,
            )  # fmt: skip
        else:
            collection, owner, number, status, trigger = (
                self.runs, RunField.JOB_ID, RunField.RUN_NUMBER, RunField.STATUS, RunField.TRIGGER,
            )  # fmt: skip
        query = {
            owner: owner_id,
            number: {"$lt": run_number},
            status: {"$in": [s for s in TERMINAL if s != RunStatus.SKIPPED.value]},
            trigger: NOT_DRY,
        }
        async for doc in collection.find(query, {status: 1}).sort(number, -1).limit(1):
            return RunStatus(doc[status])
        return None

    # --- the outbox ----------------------------------------------------------------------------

    async def insert(self, documents: list[Document]) -> int:
        """Insert those not there yet (same id: made before, by a redelivery or before a crash)."""
        if not documents:
            return 0
        try:
            result = await self.notifications.insert_many(documents, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e["code"] != DUPLICATE_KEY for e in errors) or exc.details.get("writeConcernErrors"):
                raise database_error("recording notifications", exc) from exc
            return len(documents) - len(errors)
        except PyMongoError as exc:
            raise database_error("recording notifications", exc) from exc

    async def claim(self, now: datetime, lease: timedelta) -> Document | None:
        """One due pending notification, leased to this sender until `now + lease`."""
        due = {
            F.STATUS: NotificationStatus.PENDING.value,
            F.NEXT_ATTEMPT_AT: {"$lte": now},
            "$or": [{F.CLAIMED_UNTIL: None}, {F.CLAIMED_UNTIL: {"$lte": now}}],
        }
        return await self.notifications.find_one_and_update(
            due,
            {"$set": {F.CLAIMED_UNTIL: now + lease}},
            sort=[(F.NEXT_ATTEMPT_AT, 1)],
            return_document=ReturnDocument.AFTER,
        )

    async def mark_sent(self, notification_id: str, attempts: int, now: datetime) -> None:
        await self._mark(
            notification_id,
            {
                F.STATUS: NotificationStatus.SENT.value,
                F.ATTEMPTS: attempts,
                F.SENT_AT: now,
                F.CLAIMED_UNTIL: None,
            },
        )

    async def retry_later(self, notification_id: str, attempts: int, at: datetime, error: str) -> None:
        fields = {F.ATTEMPTS: attempts, F.NEXT_ATTEMPT_AT: at, F.LAST_ERROR: error, F.CLAIMED_UNTIL: None}
        await self._mark(notification_id, fields)

    async def mark_failed(self, notification_id: str, attempts: int, error: str) -> None:
        fields = {F.STATUS: NotificationStatus.FAILED.value, F.ATTEMPTS: attempts, F.LAST_ERROR: error}
        await self._mark(notification_id, {**fields, F.CLAIMED_UNTIL: None})

    async def get(self, notification_id: str) -> Document | None:
        return await self.notifications.find_one({F.ID: notification_id})

    async def _mark(self, notification_id: str, fields: Document) -> None:
        # Only a pending one changes: a sent notification stays sent whoever marks it late.
        await self.notifications.update_one(
            {F.ID: notification_id, F.STATUS: NotificationStatus.PENDING.value}, {"$set": fields}
        )
