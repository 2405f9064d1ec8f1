"""The logsink's run records, group-run records and run logs, read-only (the catalog never writes them)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from shared.mongo import MongoClient

Document = dict[str, Any]
Sort = list[tuple[str, int]]


class MongoRunsReadModel:
    def __init__(self, client: MongoClient, logsink_db: str) -> None:
        db = client[logsink_db]
        self.runs = db["runs"]
        self.group_runs = db["group_runs"]
        self.log_lines = db["run_logs"]

    async def page(
        self, filter_: Document, *, sort: Sort, offset: int, limit: int
    ) -> tuple[list[Document], int]:
        cursor = self.runs.find(filter_).sort(sort)
        items = [doc async for doc in cursor.skip(offset).limit(limit)]
        return items, await self.runs.count_documents(filter_)

    async def get(self, run_id: str) -> Document | None:
        return await self.runs.find_one({"_id": run_id})

    async def of_group_run(self, group_run_id: str) -> list[Document]:
        return [doc async for doc in self.runs.find({"group_run_id": group_run_id})]

    async def logs(self, run_id: str, *, after: int, limit: int) -> list[Document]:
        # Line ids are `run:seq` zero-padded, so one run's lines after `after` are one `_id` range.
        id_range = {"$gt": f"{run_id}:{after:010d}", "$lt": f"{run_id};"}
        cursor = self.log_lines.find({"_id": id_range}).sort("_id", ASCENDING).limit(limit)
        return [doc async for doc in cursor]

    async def group_runs_page(
        self, filter_: Document, *, offset: int, limit: int
    ) -> tuple[list[Document], int]:
        sort = [("started_at", DESCENDING), ("group_id", DESCENDING), ("run_number", DESCENDING)]
        cursor = self.group_runs.find(filter_).sort(sort).skip(offset).limit(limit)
        return [doc async for doc in cursor], await self.group_runs.count_documents(filter_)

    async def group_run(self, group_run_id: str) -> Document | None:
        return await self.group_runs.find_one({"_id": group_run_id})
