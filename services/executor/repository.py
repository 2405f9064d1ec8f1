"""MongoDB adapters of the executor: run leases, the catalog read model, the audience tables."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.executor.domain import Rejection
from services.executor.ports import Claim, Renewal
from shared.catalog_records import ConnectionRecord, PgpKeyRecord, TableRecord
from shared.collections import CatalogCollections, ExecutorCollections
from shared.contracts import RunRequested
from shared.errors import NotFound, RetryableError
from shared.mongo import MongoClient, database_error

RUNNING, FINISHED = "running", "finished"
WAITING, ATTEMPTING = "waiting", "attempting"  # phases of a running lease: for a slot, at work


def _now() -> datetime:
    return datetime.now(UTC)


# What `claim_and_start` and `start` read back (the lease before their write): all but the stored request.
_CLAIM_FIELDS = {"attempt": 1, "started_at": 1, "checkpoint": 1, "log_seq": 1, "writing": 1}

# The table writer lock lives on the lease: `writing` names the audience collection the run writes (see
# `services/executor/table_writers.py`); this partial unique index lets one running lease at a time hold it.
WRITING = "writing"
ONE_WRITER_INDEX = "one_writer_per_table"
# A first attempt remembers this many rejected lines to count them without a query; past it, the query counts.
MAX_COUNTED_REJECTS = 100_000


async def ensure_one_writer_index(leases: Any) -> None:
    await leases.create_index(
        [(WRITING, 1)],
        name=ONE_WRITER_INDEX,
        unique=True,
        partialFilterExpression={WRITING: {"$type": "string"}},
    )


def is_table_conflict(exc: DuplicateKeyError) -> bool:
    """The duplicate is another lease's `writing` (the table is held), not the run's own `_id`."""
    details = exc.details or {}
    return WRITING in (details.get("keyPattern") or {}) or ONE_WRITER_INDEX in str(details.get("errmsg", ""))


def _claimable(run_id: str, now: datetime) -> dict[str, Any]:
    """A new run (the upsert inserts it) or a running one whose holder stopped renewing."""
    return {"_id": run_id, "status": RUNNING, "expires_at": {"$lt": now}}


def _new_lease(request: RunRequested, **fields: int) -> dict[str, Any]:
    return {"request": request.model_dump_json(), "log_seq": 0, **fields}


def _new_attempt(now: datetime) -> dict[str, Any]:
    # `$min` sets `started_at` once, in the attempt's own write: a take-over keeps the first start.
    return {"$inc": {"attempt": 1}, "$min": {"started_at": now}}


def _stored(at: datetime) -> datetime:
    """`at` as the database keeps it (milliseconds)."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _as_claim(run_id: str, before: dict[str, Any] | None, now: datetime, table: str | None) -> Claim:
    """The claim from the lease as it was before the write (None: the write inserted it) - so a take-over
    learns whether it still held `table` (nobody wrote it since), at no extra read."""
    before = before or {}
    started_at: datetime | None = before.get("started_at")
    if started_at is not None and not started_at.tzinfo:
        started_at = started_at.replace(tzinfo=UTC)
    return Claim(
        run_id=run_id,
        attempt=int(before.get("attempt", 0)) + 1,
        started_at=min(started_at, _stored(now)) if started_at is not None else _stored(now),
        checkpoint=before.get("checkpoint"),
        log_seq=int(before.get("log_seq", 0)),
        table=table,
        continued=table is not None and before.get(WRITING) == table,
    )


class MongoLeaseStore:
    """One document per run: who holds it until when, the log numbers it handed out, its final message.

    The lease makes the work exactly-once across redeliveries and crashes: a claim succeeds only
    for a new run or one whose holder stopped renewing; the final `RunFinished` is stored with the
    lease before it is published, so a crash between the two never loses it.
    """

    def __init__(
        self, client: MongoClient, db_name: str, lease_seconds: float, finished_retention_days: float = 30
    ) -> None:
        self.leases = client[db_name][ExecutorCollections.RUN_LEASES]
        self.lease = timedelta(seconds=lease_seconds)
        self.finished_retention_seconds = int(finished_retention_days * 86400)

    async def ensure_indexes(self) -> None:
        await self.leases.create_index([("status", 1), ("expires_at", 1)])
        await self.leases.create_index([("status", 1), ("reported", 1), ("finished_at", 1)])
        await self.leases.create_index([("status", 1), ("phase", 1), ("claimed_at", 1)])
        await ensure_one_writer_index(self.leases)

    async def claim(self, request: RunRequested, owner: str) -> bool:
        """Take the run (new, or its holder stopped renewing) into this executor's wait for a slot.

        Durable at once, so the delivery can be acknowledged: the run waits inside the executor, never
        as an unacknowledged message. Not an attempt yet (`start` counts it); False when a live
        executor holds it or it is finished.
        """
        now = _now()
        waiting = {
            "$set": self._holder(owner, now, WAITING),
            "$setOnInsert": _new_lease(request, attempt=0),
            "$unset": {WRITING: ""},  # a run waiting for a slot holds no table (a dead holder's hold ends)
        }
        try:
            await self.leases.update_one(_claimable(request.data.run_id, now), waiting, upsert=True)
        except DuplicateKeyError:
            return False  # held by a live executor, or finished
        except PyMongoError as exc:
            raise database_error(f"claiming run {request.data.run_id}", exc) from exc
        return True

    async def claim_and_start(
        self, request: RunRequested, owner: str, table: str | None = None
    ) -> Claim | None:
        """`claim` and `start` in one write, for an executor with a free slot; None where `claim` is False.

        With `table`, the same write takes the table's writer lock (`Claim.table`) unless another run
        holds it: then the run is claimed without it (one more write) and waits for it in the run."""
        now = _now()
        attempting: dict[str, Any] = {
            "$set": self._holder(owner, now, ATTEMPTING) | ({WRITING: table} if table else {}),
            "$setOnInsert": _new_lease(request),
            **_new_attempt(now),
        }
        try:
            before = await self.leases.find_one_and_update(
                _claimable(request.data.run_id, now), attempting, _CLAIM_FIELDS,
                upsert=True, return_document=ReturnDocument.BEFORE,
            )  # fmt: skip
        except DuplicateKeyError as exc:
            if table is not None and is_table_conflict(exc):
                return await self.claim_and_start(request, owner)
            return None  # held by a live executor, or finished
        except PyMongoError as exc:
            raise database_error(f"claiming run {request.data.run_id}", exc) from exc
        return _as_claim(request.data.run_id, before, now, table)

    async def start(self, run_id: str, owner: str, table: str | None = None) -> Claim | None:
        """A slot is free: the claimed run becomes an attempt; None when another executor took it meanwhile.
        `table` as in `claim_and_start`."""
        now = _now()
        update: dict[str, Any] = {
            "$set": {"phase": ATTEMPTING, "expires_at": now + self.lease}
            | ({WRITING: table} if table else {}),
            **_new_attempt(now),
        }
        try:
            before = await self.leases.find_one_and_update(
                {"_id": run_id, "owner": owner, "status": RUNNING, "phase": WAITING}, update, _CLAIM_FIELDS,
                return_document=ReturnDocument.BEFORE,
            )  # fmt: skip
        except DuplicateKeyError as exc:
            if table is not None and is_table_conflict(exc):
                return await self.start(run_id, owner)
            raise RetryableError(f"run {run_id} met a unique index while starting: {exc}") from exc
        except PyMongoError as exc:
            raise database_error(f"starting run {run_id}", exc) from exc
        return None if before is None else _as_claim(run_id, before, now, table)

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
            raise database_error(f"saving a checkpoint of {run_id}", exc) from exc

    async def load_checkpoint(self, run_id: str) -> dict[str, Any] | None:
        doc = await self.leases.find_one({"_id": run_id}, {"checkpoint": 1})
        return (doc or {}).get("checkpoint")

    async def renew(self, run_id: str, owner: str) -> Renewal:
        """Extend the lease, and with it the table writer lock it carries (one write for both)."""
        doc = await self.leases.find_one_and_update(
            {"_id": run_id, "owner": owner, "status": RUNNING},
            {"$set": {"expires_at": _now() + self.lease}},
            {WRITING: 1},
        )
        return Renewal(held=doc is not None, writing=None if doc is None else doc.get(WRITING))

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
            raise database_error(f"recording the log numbers of {run_id}", exc) from exc
        return result.matched_count == 1

    async def finish(self, run_id: str, owner: str, finished_message: str) -> bool:
        """Store the run's result and free its table; False when `owner` no longer holds the lease (nothing
        stored). The same write ends the table writer lock: the next writer may start at once."""
        done = {"status": FINISHED, "finished": finished_message, "reported": False, "finished_at": _now()}
        try:
            result = await self.leases.update_one(
                {"_id": run_id, "owner": owner}, {"$set": done, "$unset": {WRITING: ""}}
            )
        except PyMongoError as exc:
            raise database_error(f"storing the result of run {run_id}", exc) from exc
        return result.matched_count == 1

    async def mark_reported(self, run_ids: Sequence[str]) -> None:
        """Results out on the broker: the reaper no longer republishes them (one write for many runs)."""
        await self.leases.update_many({"_id": {"$in": list(run_ids)}}, {"$set": {"reported": True}})

    async def expired(self, limit: int) -> list[RunRequested]:
        cursor = self.leases.find({"status": RUNNING, "expires_at": {"$lt": _now()}}).limit(limit)
        return [RunRequested.model_validate_json(doc["request"]) async for doc in cursor]

    async def prune_finished(self) -> int:
        """Delete the leases of runs that ended longer ago than the retention and were reported; returns how
        many. Live leases (no `finished_at`) and unreported results (the reaper still republishes them) stay.

        A duplicate RunRequested arriving after the retention would start its run again: the outbox
        re-publishes within minutes, so 30 days of margin carry the exactly-once guarantee that keeping every
        lease forever carried before. One ranged delete on the (status, reported, finished_at) index, run by
        the executor now and then, rather than a TTL index: the embedded server's TTL monitor reads a TTL
        collection whole every minute, and this one is the largest an executor writes."""
        before = _now() - timedelta(seconds=self.finished_retention_seconds)
        done = {"status": FINISHED, "reported": True, "finished_at": {"$lt": before}}
        try:
            return (await self.leases.delete_many(done)).deleted_count
        except PyMongoError as exc:
            raise database_error("pruning finished run leases", exc) from exc

    async def unreported(self, older_than_seconds: float) -> list[str]:
        before = _now() - timedelta(seconds=older_than_seconds)
        cursor = self.leases.find({"status": FINISHED, "reported": False, "finished_at": {"$lt": before}})
        return [doc["finished"] async for doc in cursor.limit(500)]


class MongoCatalogReader:
    """Read model over the catalog's collections (the catalog is their only writer); table definitions cached.

    A table definition is immutable: the catalog inserts it and nothing updates, replaces or deletes it (no
    API edits one; the name is unique and never reused), and its collection's shape follows from it. So the
    definition read once is the definition for good: each is read once per executor process instead of
    once per run. A missing one is not cached (it may be created a moment later). Connections are read
    every time: their secrets are rotated in place (a key replaced), and the next run must use the new one.
    Whoever makes tables editable must key this cache by a version the run request carries
    (`tests/integration/test_run_ops_cache.py` fails when a route that could change one appears)."""

    MAX_CACHED = 4096  # table definitions; beyond it the oldest is read again when next used

    def __init__(self, client: MongoClient, catalog_db: str) -> None:
        db = client[catalog_db]
        self.connections = db[CatalogCollections.CONNECTIONS]
        self.tables = db[CatalogCollections.TABLES]
        self.keys = db[CatalogCollections.PGP_KEYS]
        self._tables: dict[str, TableRecord] = {}

    async def connection(self, connection_id: int) -> ConnectionRecord:
        doc = await self.connections.find_one({"_id": connection_id})
        if doc is None:
            raise NotFound(f"connection {connection_id} does not exist")
        return ConnectionRecord.model_validate(doc)

    async def key(self, key_id: int) -> PgpKeyRecord:
        doc = await self.keys.find_one({"_id": key_id})
        if doc is None:
            raise NotFound(f"key {key_id} does not exist")
        return PgpKeyRecord.model_validate(doc)

    async def table(self, name: str) -> TableRecord:
        if (cached := self._tables.get(name)) is not None:
            return cached
        doc = await self.tables.find_one({"name": name})
        if doc is None:
            raise NotFound(f"table {name} does not exist")
        table = TableRecord.model_validate(doc)
        if len(self._tables) >= self.MAX_CACHED:
            del self._tables[next(iter(self._tables))]  # the oldest: insertion order
        self._tables[name] = table
        return table


class MongoRejectStore:
    """Rejected records of runs, keyed by (run, file, line): saving again after a take-over adds nothing,
    so the count is exact and the rejects file complete whoever finishes the run. Kept 14 days.

    Each holds the field, the reason and the raw record (cut); the catalog reads them as a read model
    (`GET /runs/{run_id}/rejects`, in (file, line) order over the index below)."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.rejects = client[db_name][ExecutorCollections.RUN_REJECTS]
        self._counted: str | None = None  # the run whose rejects this store counts as it saves them
        self._lines: dict[int, set[int]] = {}  # file -> lines rejected by this attempt
        self._remembered = 0

    def counting(self, run_id: str) -> MongoRejectStore:
        """This store for one run's first attempt: it reads every line once, so the lines its saves reject are
        the whole count - `count` and `files` answer from memory, no query. A take-over (it resumes after a
        checkpoint, an earlier holder saved the lines before it) uses the store itself: it counts."""
        scoped = copy.copy(self)
        scoped._counted, scoped._lines, scoped._remembered = run_id, {}, 0
        return scoped

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
            if run_id == self._counted:  # some may be stored, which ones is not known: count from now on
                self._counted = None
            raise database_error("saving rejected records", exc) from exc
        if run_id == self._counted:
            # The lines this attempt rejected, each once: a retry saves a line again and adds nothing, and a
            # line an earlier claim of the run already stored counts (the lease may be gone, the rejects not).
            for r in rejections:
                self._lines.setdefault(r.file, set()).add(r.line)
            self._remembered += len(rejections)
            if self._remembered > MAX_COUNTED_REJECTS:  # bounded memory: the query counts beyond this
                self._counted, self._lines = None, {}

    async def count(self, run_id: str, file: int | None = None) -> int:
        if run_id == self._counted:
            return sum(map(len, self._lines.values())) if file is None else len(self._lines.get(file, ()))
        query: dict[str, Any] = {"run": run_id}
        if file is not None:
            query["file"] = file
        return int(await self.rejects.count_documents(query))

    async def files(self, run_id: str) -> list[int]:
        if run_id == self._counted:
            return sorted(f for f, lines in self._lines.items() if lines)
        return sorted(int(f) for f in await self.rejects.distinct("file", {"run": run_id}))

    async def first(self, run_id: str, limit: int) -> list[Rejection]:
        """The run's first `limit` rejects in (file, line) order (over the index above)."""
        cursor = self.rejects.find({"run": run_id}).sort([("file", 1), ("line", 1)]).limit(limit)
        return [
            Rejection(int(doc["line"]), doc["field"], doc["reason"], int(doc["file"])) async for doc in cursor
        ]

    async def iterate(self, run_id: str, file: int) -> AsyncIterator[Rejection]:
        cursor = self.rejects.find({"run": run_id, "file": file}).sort("line", 1).batch_size(1000)
        async for doc in cursor:
            yield Rejection(
                int(doc["line"]), doc["field"], doc["reason"], int(doc["file"]), record=doc.get("record", "")
            )


class MongoWatermarks:
    """Per export job: when its last successful run started (incremental exports read changes since)."""

    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.marks = client[db_name][ExecutorCollections.EXPORT_WATERMARKS]

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
