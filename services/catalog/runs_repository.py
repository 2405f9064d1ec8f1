"""The logsink's run records, group-run records and run logs, read-only (the catalog never writes them)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.catalog.runs import TERMINAL
from shared.mongo import MongoClient
from shared.runlogs import LinePage, chunk_id, lookback_start

Document = dict[str, Any]
Sort = list[tuple[str, int]]


class MongoRunsReadModel:
    def __init__(self, client: MongoClient, logsink_db: str) -> None:
        db = client[logsink_db]
        self.runs = db["runs"]
        self.group_runs = db["group_runs"]
        self.log_chunks = db["run_logs"]
        self.progress = db["run_progress"]

    async def page(
        self, filter_: Document, *, sort: Sort, offset: int, limit: int
    ) -> tuple[list[Document], int]:
        cursor = self.runs.find(filter_).sort(sort)
        items = [doc async for doc in cursor.skip(offset).limit(limit)]
        return await self._with_progress(items), await self.runs.count_documents(filter_)

    async def get(self, run_id: str) -> Document | None:
        doc = await self.runs.find_one({"_id": run_id})
        return None if doc is None else (await self._with_progress([doc]))[0]

    async def of_group_run(self, group_run_id: str) -> list[Document]:
        return await self._with_progress(
            [doc async for doc in self.runs.find({"group_run_id": group_run_id})]
        )

    async def _with_progress(self, runs: list[Document]) -> list[Document]:
        """Runs not yet terminal get their latest progress snapshot (kept apart by the logsink)."""
        ids = [run["_id"] for run in runs if run.get("status") not in TERMINAL]
        if not ids:
            return runs
        found = {doc.pop("_id"): doc async for doc in self.progress.find({"_id": {"$in": ids}})}
        return [run | {"progress": found[run["_id"]]} if run["_id"] in found else run for run in runs]

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
    ) -> tuple[list[Document], int]:
        sort = [("started_at", DESCENDING), ("group_id", DESCENDING), ("run_number", DESCENDING)]
        cursor = self.group_runs.find(filter_).sort(sort).skip(offset).limit(limit)
        return [doc async for doc in cursor], await self.group_runs.count_documents(filter_)

    async def group_run(self, group_run_id: str) -> Document | None:
        return await self.group_runs.find_one({"_id": group_run_id})
