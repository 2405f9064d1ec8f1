"""The logsink's run records, group-run records, run logs and notifications, and the executor's rejected
records: read-only (the catalog never writes them). Run and group-run records are read as
`shared.run_records` models them, notifications as `shared.notification_records` does."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.catalog.rejects import RejectCursor
from shared.collections import ExecutorCollections, LogsinkCollections
from shared.mongo import MongoClient
from shared.notification_records import NotificationField, NotificationRecord, OwnerKind
from shared.run_records import GroupRunField, GroupRunRecord, RunField, RunRecord
from shared.runlogs import LinePage, chunk_id, lookback_start

Document = dict[str, Any]
Sort = list[tuple[str, int]]
REJECT_ORDER: Sort = [("file", ASCENDING), ("line", ASCENDING)]
GROUP_RUN_ORDER: Sort = [
    (GroupRunField.STARTED_AT, DESCENDING),
    (GroupRunField.GROUP_ID, DESCENDING),
    (GroupRunField.RUN_NUMBER, DESCENDING),
]  # newest first
NOTIFICATION_ORDER: Sort = [(NotificationField.RULE, ASCENDING), (NotificationField.CHANNEL_ID, ASCENDING)]


class MongoRunsReadModel:
    def __init__(self, client: MongoClient, logsink_db: str, executor_db: str) -> None:
        db = client[logsink_db]
        self.runs = db[LogsinkCollections.RUNS]
        self.group_runs = db[LogsinkCollections.GROUP_RUNS]
        self.log_chunks = db[LogsinkCollections.RUN_LOGS]
        # Indexed by the logsink on (run_id, owner_kind, rule, channel_id): the query and its order.
        self.notifications = db[LogsinkCollections.NOTIFICATIONS]
        self.rejects_of_runs = client[executor_db][
            ExecutorCollections.RUN_REJECTS
        ]  # indexed on (run, file, line)

    async def page(
        self, filter_: Document, *, sort: Sort, offset: int, limit: int
    ) -> tuple[list[RunRecord], int]:
        cursor = self.runs.find(filter_).sort(sort)
        items = [RunRecord.from_document(doc) async for doc in cursor.skip(offset).limit(limit)]
        return items, await self.runs.count_documents(filter_)

    async def get(self, run_id: str) -> RunRecord | None:
        # Progress is in the record (shown while running).
        doc = await self.runs.find_one({RunField.ID: run_id})
        return RunRecord.from_document(doc) if doc is not None else None

    async def of_group_run(self, group_run_id: str) -> list[RunRecord]:
        cursor = self.runs.find({RunField.GROUP_RUN_ID: group_run_id})
        return [RunRecord.from_document(doc) async for doc in cursor]

    async def logs(self, run_id: str, *, after: int, limit: int) -> list[Document]:
        """The first `limit` lines after `after`, read from the run's chunks (one `_id` range)."""
        id_range = {"$gte": chunk_id(run_id, lookback_start(after)), "$lt": f"{run_id};"}
        cursor = self.log_chunks.find({"_id": id_range, "last": {"$gt": after}}).sort("_id", ASCENDING)
        page = LinePage(after, limit)
        async for chunk in cursor:
            if not page.wants(chunk):
                break
            page.add(chunk)
        await cursor.close()
        return page.lines()

    async def group_runs_page(
        self, filter_: Document, *, offset: int, limit: int
    ) -> tuple[list[GroupRunRecord], int]:
        cursor = self.group_runs.find(filter_).sort(GROUP_RUN_ORDER).skip(offset).limit(limit)
        items = [GroupRunRecord.from_document(doc) async for doc in cursor]
        return items, await self.group_runs.count_documents(filter_)

    async def group_run(self, group_run_id: str) -> GroupRunRecord | None:
        doc = await self.group_runs.find_one({GroupRunField.ID: group_run_id})
        return GroupRunRecord.from_document(doc) if doc is not None else None

    async def notifications_of(self, owner_kind: OwnerKind, run_id: str) -> list[NotificationRecord]:
        # A job's run and a group's run may share an id ("2.5"): the owner kind tells them apart.
        of_run = {NotificationField.RUN_ID: run_id, NotificationField.OWNER_KIND: owner_kind}
        cursor = self.notifications.find(of_run).sort(NOTIFICATION_ORDER)
        return [NotificationRecord.from_document(doc) async for doc in cursor]

    async def rejects(
        self, run_id: str, *, after: RejectCursor | None, offset: int, limit: int
    ) -> tuple[list[Document], int]:
        """A page of the run's rejects in (file, line) order, from an offset or after a cursor.

        After a cursor: the rest of its file, then the files after it — two plain range scans of the
        (run, file, line) index, which every server walks without sorting the whole run.
        """
        of_run: Document = {"run": run_id}
        if after is None:
            items = await self._reject_docs(of_run, skip=offset, limit=limit)
        else:
            same_file = {**of_run, "file": after.file, "line": {"$gt": after.line}}
            items = await self._reject_docs(same_file, limit=limit)
            if len(items) < limit:
                later_files = {**of_run, "file": {"$gt": after.file}}
                items += await self._reject_docs(later_files, limit=limit - len(items))
        return items, await self.rejects_of_runs.count_documents(of_run)

    async def _reject_docs(self, filter_: Document, *, limit: int, skip: int = 0) -> list[Document]:
        cursor = self.rejects_of_runs.find(filter_, {"_id": 0, "at": 0}).sort(REJECT_ORDER)
        return [doc async for doc in cursor.skip(skip).limit(limit)]
