"""MongoDB adapter of the per-table writer lock: one document per audience collection (`table_writers`).

A document names the run writing the table, the executor doing it and when the hold expires. The hold is
renewed with the run lease's heartbeat and lasts as long as a lease: if the executor dies, other runs wait
at most one lease period, and the take-over of the same run id gets the table back if nobody took it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.executor.ports import TableHold
from shared.errors import RetryableError
from shared.mongo import MongoClient


def _now() -> datetime:
    return datetime.now(UTC)


class MongoTableWriters:
    def __init__(self, client: MongoClient, db_name: str, lease_seconds: float) -> None:
        self.holds = client[db_name]["table_writers"]
        self.lease = timedelta(seconds=lease_seconds)

    async def ensure_indexes(self) -> None:
        await self.holds.create_index([("run_id", 1), ("owner", 1)])

    async def acquire(self, table: str, run_id: str, owner: str) -> TableHold:
        now = _now()
        try:
            before = await self.holds.find_one_and_update(
                {"_id": table, "$or": [{"run_id": run_id}, {"expires_at": {"$lt": now}}]},
                {"$set": {"run_id": run_id, "owner": owner, "expires_at": now + self.lease}},
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
        except DuplicateKeyError:  # held by another run that keeps renewing it
            return TableHold(acquired=False, holder=await self._holder(table))
        except PyMongoError as exc:
            raise RetryableError(
                f"database error while taking table {table} for run {run_id}: {exc}"
            ) from exc
        return TableHold(acquired=True, continued=before is not None and before.get("run_id") == run_id)

    async def renew(self, run_id: str, owner: str) -> int:
        return await self._update(
            {"run_id": run_id, "owner": owner}, {"expires_at": _now() + self.lease}, run_id
        )

    async def release(self, table: str, run_id: str, owner: str) -> None:
        try:
            await self.holds.delete_one({"_id": table, "run_id": run_id, "owner": owner})
        except PyMongoError as exc:
            raise RetryableError(
                f"database error while releasing table {table} of run {run_id}: {exc}"
            ) from exc

    async def hand_over(self, run_id: str, owner: str) -> None:
        await self._update({"run_id": run_id, "owner": owner}, {"expires_at": _now()}, run_id)

    async def _holder(self, table: str) -> str | None:
        try:
            doc = await self.holds.find_one({"_id": table}, {"run_id": 1})
        except PyMongoError as exc:
            raise RetryableError(f"database error while reading the writer of table {table}: {exc}") from exc
        return None if doc is None else str(doc["run_id"])

    async def _update(self, query: dict[str, str], values: dict[str, datetime], run_id: str) -> int:
        try:
            result = await self.holds.update_many(query, {"$set": values})
        except PyMongoError as exc:
            raise RetryableError(f"database error while renewing the tables of run {run_id}: {exc}") from exc
        return int(result.matched_count)
