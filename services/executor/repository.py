"""MongoDB adapters of the executor: run leases, the catalog read model, the audience tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from services.executor.ports import Claim, WriteResult
from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts import RunRequested
from shared.errors import NotFound, PermanentError, RetryableError
from shared.mongo import MongoClient

RUNNING, FINISHED = "running", "finished"


def _now() -> datetime:
    return datetime.now(UTC)


class MongoLeaseStore:
    """One document per run: who holds it until when, its log counter and its final message.

    The lease makes the work exactly-once across redeliveries and crashes: a claim succeeds only
    for a new run or one whose holder stopped renewing; the final `RunFinished` is stored with the
    lease before it is published, so a crash between the two never loses it.
    """

    def __init__(self, client: MongoClient, db_name: str, lease_seconds: float) -> None:
        self.leases = client[db_name]["run_leases"]
        self.lease = timedelta(seconds=lease_seconds)

    async def ensure_indexes(self) -> None:
        await self.leases.create_index([("status", 1), ("expires_at", 1)])
        await self.leases.create_index([("status", 1), ("reported", 1), ("finished_at", 1)])

    async def claim(self, request: RunRequested, owner: str) -> Claim | None:
        now = _now()
        try:
            doc = await self.leases.find_one_and_update(
                {"_id": request.data.run_id, "status": RUNNING, "expires_at": {"$lt": now}},
                {
                    "$set": {"owner": owner, "expires_at": now + self.lease, "claimed_at": now},
                    "$inc": {"attempt": 1},
                    "$setOnInsert": {"request": request.model_dump_json(), "log_seq": 0},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return None  # held by a live executor, or finished
        except PyMongoError as exc:
            raise RetryableError(f"database error while claiming run {request.data.run_id}: {exc}") from exc
        assert doc is not None
        return Claim(run_id=request.data.run_id, attempt=int(doc["attempt"]))

    async def renew(self, run_id: str, owner: str) -> bool:
        result = await self.leases.update_one(
            {"_id": run_id, "owner": owner, "status": RUNNING}, {"$set": {"expires_at": _now() + self.lease}}
        )
        return result.matched_count == 1

    async def next_log_seq(self, run_id: str) -> int:
        doc = await self.leases.find_one_and_update(
            {"_id": run_id}, {"$inc": {"log_seq": 1}}, return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise NotFound(f"no lease for run {run_id}")
        return int(doc["log_seq"])

    async def finish(self, run_id: str, owner: str, finished_message: str) -> None:
        await self.leases.update_one(
            {"_id": run_id, "owner": owner},
            {
                "$set": {
                    "status": FINISHED,
                    "finished": finished_message,
                    "reported": False,
                    "finished_at": _now(),
                }
            },
        )

    async def mark_reported(self, run_id: str) -> None:
        await self.leases.update_one({"_id": run_id}, {"$set": {"reported": True}})

    async def expired(self, limit: int) -> list[RunRequested]:
        cursor = self.leases.find({"status": RUNNING, "expires_at": {"$lt": _now()}}).limit(limit)
        return [RunRequested.model_validate_json(doc["request"]) async for doc in cursor]

    async def unreported(self, older_than_seconds: float) -> list[str]:
        before = _now() - timedelta(seconds=older_than_seconds)
        cursor = self.leases.find({"status": FINISHED, "reported": False, "finished_at": {"$lt": before}})
        return [doc["finished"] async for doc in cursor.limit(500)]


class MongoCatalogReader:
    """Read model over the catalog's collections (the catalog is their only writer)."""

    def __init__(self, client: MongoClient, catalog_db: str) -> None:
        db = client[catalog_db]
        self.connections = db["connections"]
        self.tables = db["tables"]

    async def connection(self, connection_id: int) -> ConnectionRecord:
        doc = await self.connections.find_one({"_id": connection_id})
        if doc is None:
            raise NotFound(f"connection {connection_id} does not exist")
        return ConnectionRecord.model_validate(doc)

    async def table(self, name: str) -> TableRecord:
        doc = await self.tables.find_one({"name": name})
        if doc is None:
            raise NotFound(f"table {name} does not exist")
        return TableRecord.model_validate(doc)


class MongoTableWriter:
    """Writes audience rows with unordered bulk upserts keyed by the table's primary key."""

    def __init__(self, client: MongoClient, audience_db: str) -> None:
        self.db = client[audience_db]

    async def prepare(self, table: TableRecord) -> None:
        keys = [(name, 1) for name in table.primary_key]
        await self.db[table.collection].create_index(keys, unique=True, name="primary_key")

    async def merge(self, table: TableRecord, rows: Sequence[dict[str, Any]]) -> WriteResult:
        operations = [
            UpdateOne({name: row[name] for name in table.primary_key}, {"$set": row}, upsert=True)
            for row in rows
        ]
        try:
            result = await self.db[table.collection].bulk_write(operations, ordered=False)
        except BulkWriteError as exc:
            raise PermanentError(f"database refused rows: {exc.details.get('writeErrors', [])[:1]}") from exc
        except PyMongoError as exc:
            raise RetryableError(f"database error while writing {table.name}: {exc}") from exc
        return WriteResult(inserted=result.upserted_count, updated=result.matched_count)
