"""MongoDB adapters of the catalog: its own collections, and the runs read model (logsink's)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.catalog_records import ConnectionRecord, TableRecord
from shared.errors import Conflict, NotFound, RetryableError
from shared.mongo import MongoClient

COLLECTIONS = ("connections", "tables", "jobs", "tokens")


class MongoCatalogRepository:
    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.db = client[db_name]

    async def ensure_indexes(self) -> None:
        await self.db["connections"].create_index("name", unique=True)
        await self.db["tables"].create_index("name", unique=True)
        await self.db["jobs"].create_index("name", unique=True)

    async def next_id(self, kind: str) -> int:
        doc = await self.db["counters"].find_one_and_update(
            {"_id": kind}, {"$inc": {"last": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert doc is not None
        return int(doc["last"])

    async def insert(self, collection: str, document: dict[str, Any]) -> None:
        try:
            await self.db[collection].insert_one(document)
        except DuplicateKeyError as exc:
            name = document.get("name", document.get("_id"))
            raise Conflict(f"a {collection[:-1]} named '{name}' already exists", field="name") from exc
        except PyMongoError as exc:
            raise RetryableError(f"database error: {exc}") from exc

    async def find(self, collection: str, filter_: dict[str, Any]) -> dict[str, Any] | None:
        return await self.db[collection].find_one(filter_)

    async def page(
        self, collection: str, filter_: dict[str, Any], *, sort: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        direction = DESCENDING if sort.startswith("-") else ASCENDING
        cursor = self.db[collection].find(filter_).sort(sort.lstrip("-"), direction).skip(offset).limit(limit)
        return [doc async for doc in cursor], await self.db[collection].count_documents(filter_)

    async def connection(self, connection_id: int) -> ConnectionRecord:
        doc = await self.find("connections", {"_id": connection_id})
        if doc is None:
            raise NotFound(f"connection {connection_id} does not exist", field="connection_id")
        return ConnectionRecord.model_validate(doc)

    async def table(self, name: str) -> TableRecord:
        doc = await self.find("tables", {"name": name})
        if doc is None:
            raise NotFound(f"table '{name}' does not exist", field="table")
        return TableRecord.model_validate(doc)


class MongoRunsReadModel:
    """The logsink's run records and logs, read-only."""

    def __init__(self, client: MongoClient, logsink_db: str) -> None:
        db = client[logsink_db]
        self.runs = db["runs"]
        self.log_lines = db["run_logs"]

    async def page(
        self, filter_: dict[str, Any], *, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        cursor = self.runs.find(filter_).sort([("requested_at", DESCENDING), ("_id", DESCENDING)])
        items = [doc async for doc in cursor.skip(offset).limit(limit)]
        return items, await self.runs.count_documents(filter_)

    async def get(self, run_id: str) -> dict[str, Any] | None:
        return await self.runs.find_one({"_id": run_id})

    async def logs(self, run_id: str, *, after: int, limit: int) -> list[dict[str, Any]]:
        cursor = (
            self.log_lines.find({"run_id": run_id, "seq": {"$gt": after}}).sort("seq", ASCENDING).limit(limit)
        )
        return [doc async for doc in cursor]

    async def last_start(self, job_id: int) -> Any:
        doc = await self.runs.find_one(
            {"job_id": job_id, "started_at": {"$ne": None}}, sort=[("started_at", -1)]
        )
        return doc.get("started_at") if doc else None
