"""MongoDB adapters of the executor: run leases, the catalog read model, the audience tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.executor.domain import Rejection
from services.executor.ports import Claim
from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts import RunRequested
from shared.errors import NotFound, RetryableError
from shared.mongo import MongoClient

RUNNING, FINISHED = "running", "finished"
WAITING, ATTEMPTING = "waiting", "attempting"  # phases of a running lease: for a slot, at work


def _now() -> datetime:
    return datetime.now(UTC)


# What `claim_and_start` and `start` read back: all but the stored request (it may be large).
_CLAIM_FIELDS = {"attempt": 1, "started_at": 1, "checkpoint": 1, "log_seq": 1}


def _claimable(run_id: str, now: datetime) -> dict[str, Any]:
    """A new run (the upsert inserts it) or a running one whose holder stopped renewing."""
    return {"_id": run_id, "status": RUNNING, "expires_at": {"$lt": now}}


def _new_lease(request: RunRequested, **fields: int) -> dict[str, Any]:
    return {"request": request.model_dump_json(), "log_seq": 0, **fields}


def _new_attempt(now: datetime) -> dict[str, Any]:
    # `$min` sets `started_at` once, in the attempt's own write: a take-over keeps the first start.
    return {"$inc": {"attempt": 1}, "$min": {"started_at": now}}


def _as_claim(doc: dict[str, Any]) -> Claim:
    started_at: datetime = doc["started_at"]
    return Claim(
        run_id=doc["_id"],
        attempt=int(doc["attempt"]),
        started_at=started_at if started_at.tzinfo else started_at.replace(tzinfo=UTC),
        checkpoint=doc.get("checkpoint"),
        log_seq=int(doc.get("log_seq", 0)),
    )


class MongoLeaseStore:
    """One document per run: who holds it until when, the log numbers it handed out, its final message.

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
        await self.leases.create_index([("status", 1), ("phase", 1), ("claimed_at", 1)])

    async def claim(self, request: RunRequested, owner: str) -> bool:
        """Take the run (new, or its holder stopped renewing) into this executor's wait for a slot.

        Durable at once, so the delivery can be acknowledged: the run waits inside the executor, never
        as an unacknowledged message. Not an attempt yet (`start` counts it); False when a live
        executor holds it or it is finished.
        """
        now = _now()
        waiting = {"$set": self._holder(owner, now, WAITING), "$setOnInsert": _new_lease(request, attempt=0)}
        try:
            await self.leases.update_one(_claimable(request.data.run_id, now), waiting, upsert=True)
        except DuplicateKeyError:
            return False  # held by a live executor, or finished
        except PyMongoError as exc:
            raise RetryableError(f"database error while claiming run {request.data.run_id}: {exc}") from exc
        return True

    async def claim_and_start(self, request: RunRequested, owner: str) -> Claim | None:
        """`claim` and `start` in one write, for an executor with a free slot; None where `claim` is False."""
        now = _now()
        attempting = {
            "$set": self._holder(owner, now, ATTEMPTING),
            "$setOnInsert": _new_lease(request),
            **_new_attempt(now),
        }
        try:
            doc = await self.leases.find_one_and_update(
                _claimable(request.data.run_id, now), attempting, _CLAIM_FIELDS,
                upsert=True, return_document=ReturnDocument.AFTER,
            )  # fmt: skip
        except DuplicateKeyError:
            return None  # held by a live executor, or finished
        except PyMongoError as exc:
            raise RetryableError(f"database error while claiming run {request.data.run_id}: {exc}") from exc
        return None if doc is None else _as_claim(doc)  # an upsert returns its document

    async def start(self, run_id: str, owner: str) -> Claim | None:
        """A slot is free: the claimed run becomes an attempt; None when another executor took it meanwhile."""
        now = _now()
        try:
            doc = await self.leases.find_one_and_update(
                {"_id": run_id, "owner": owner, "status": RUNNING, "phase": WAITING},
                {"$set": {"phase": ATTEMPTING, "expires_at": now + self.lease}, **_new_attempt(now)},
                _CLAIM_FIELDS,
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as exc:
            raise RetryableError(f"database error while starting run {run_id}: {exc}") from exc
        return None if doc is None else _as_claim(doc)

    def _holder(self, owner: str, now: datetime, phase: str) -> dict[str, Any]:
        return {"owner": owner, "expires_at": now + self.lease, "claimed_at": now, "phase": phase}

    async def steal_waiting(self, owner: str, limit: int) -> list[RunRequested]:
        """Runs another live executor claimed but has no slot for, oldest first, taken over by `owner`."""
        stolen: list[RunRequested] = []
        query = {"status": RUNNING, "phase": WAITING, "owner": {"$ne": owner}}
        async for doc in self.leases.find(query).sort("claimed_at", 1).limit(limit):
            now = _now()
            taken = await self.leases.update_one(
                {"_id": doc["_id"], "owner": doc["owner"], "status": RUNNING, "phase": WAITING},
                {"$set": {"owner": owner, "expires_at": now + self.lease, "claimed_at": now}},
            )
            if taken.modified_count == 1:
                stolen.append(RunRequested.model_validate_json(doc["request"]))
        return stolen

    async def save_checkpoint(self, run_id: str, owner: str, checkpoint: dict[str, Any]) -> None:
        """Progress of the data work that a take-over resumes from (only by the lease holder)."""
        try:
            await self.leases.update_one(
                {"_id": run_id, "owner": owner, "status": RUNNING}, {"$set": {"checkpoint": checkpoint}}
            )
        except PyMongoError as exc:
            raise RetryableError(f"database error while saving a checkpoint of {run_id}: {exc}") from exc

    async def load_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        doc = await self.leases.find_one({"_id": run_id}, {"checkpoint": 1})
        return (doc or {}).get("checkpoint")

    async def renew(self, run_id: str, owner: str) -> bool:
        result = await self.leases.update_one(
            {"_id": run_id, "owner": owner, "status": RUNNING}, {"$set": {"expires_at": _now() + self.lease}}
        )
        return result.matched_count == 1

    async def release(self, run_id: str, owner: str, log_seq: int) -> bool:
        """Give a run up (shutdown past the grace period): another executor may take it over at once.

        Records the last log number handed out, so the take-over numbers after it; False (nothing
        recorded) when `owner` no longer holds the run."""
        result = await self.leases.update_one(
            {"_id": run_id, "owner": owner, "status": RUNNING},
            {"$set": {"expires_at": _now()}, "$max": {"log_seq": log_seq}},
        )
        return result.matched_count == 1

    async def record_log_seq(self, run_id: str, owner: str, log_seq: int) -> bool:
        """Lines up to `log_seq` may now be sent: a take-over numbers after them. False: the lease is lost."""
        try:
            result = await self.leases.update_one(
                {"_id": run_id, "owner": owner, "status": RUNNING}, {"$max": {"log_seq": log_seq}}
            )
        except PyMongoError as exc:
            raise RetryableError(
                f"database error while recording the log numbers of {run_id}: {exc}"
            ) from exc
        return result.matched_count == 1

    async def finish(self, run_id: str, owner: str, finished_message: str) -> bool:
        """Store the run's result; False when `owner` no longer holds the lease (nothing stored)."""
        done = {"status": FINISHED, "finished": finished_message, "reported": False, "finished_at": _now()}
        try:
            result = await self.leases.update_one({"_id": run_id, "owner": owner}, {"$set": done})
        except PyMongoError as exc:
            raise RetryableError(f"database error while storing the result of run {run_id}: {exc}") from exc
        return result.matched_count == 1

    async def mark_reported(self, run_ids: Sequence[str]) -> None:
        """Results out on the broker: the reaper no longer republishes them (one write for many runs)."""
        await self.leases.update_many({"_id": {"$in": list(run_ids)}}, {"$set": {"reported": True}})

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


class MongoRejectStore:
    """Rejected records of runs, keyed by (run, file, line): saving again after a take-over adds nothing,
    so the count is exact and the rejects file complete whoever finishes the run. Kept 14 days.

    Each holds the field, the reason and the raw record (cut); the catalog reads them as a read model
    (`GET /runs/{run_id}/rejects`, in (file, line) order over the index below)."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.rejects = client[db_name]["run_rejects"]

    async def ensure_indexes(self) -> None:
        await self.rejects.create_index([("run", 1), ("file", 1), ("line", 1)])
        await self.rejects.create_index([("at", 1)], expireAfterSeconds=14 * 86400)

    async def save(self, run_id: str, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        now = _now()
        operations = [
            UpdateOne(
                {"_id": f"{run_id}|{r.file}|{r.line}"},
                {"$setOnInsert": {"run": run_id, "file": r.file, "line": r.line, "field": r.field,
                                  "reason": r.reason, "record": r.record, "at": now}},
                upsert=True,
            )
            for r in rejections
        ]  # fmt: skip
        try:
            await self.rejects.bulk_write(operations, ordered=False)
        except PyMongoError as exc:
            raise RetryableError(f"database error while saving rejected records: {exc}") from exc

    async def count(self, run_id: str, file: int | None = None) -> int:
        query: dict[str, Any] = {"run": run_id}
        if file is not None:
            query["file"] = file
        return int(await self.rejects.count_documents(query))

    async def files(self, run_id: str) -> list[int]:
        return sorted(int(f) for f in await self.rejects.distinct("file", {"run": run_id}))

    async def iterate(self, run_id: str, file: int) -> AsyncIterator[Rejection]:
        cursor = self.rejects.find({"run": run_id, "file": file}).sort("line", 1).batch_size(1000)
        async for doc in cursor:
            yield Rejection(
                int(doc["line"]), doc["field"], doc["reason"], int(doc["file"]), record=doc.get("record", "")
            )


class MongoWatermarks:
    """Per export job: when its last successful run started (incremental exports read changes since)."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.marks = client[db_name]["export_watermarks"]

    async def get(self, job_id: int) -> datetime | None:
        doc = await self.marks.find_one({"_id": job_id})
        if doc is None:
            return None
        at: datetime = doc["since"]
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    async def advance(self, job_id: int, since: datetime, run_id: str) -> None:
        await self.marks.update_one(
            {"_id": job_id}, {"$max": {"since": since}, "$set": {"run_id": run_id}}, upsert=True
        )
