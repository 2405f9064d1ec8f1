"""MongoDB adapter of the per-table writer lock: a field of the run's lease (`run_leases.writing`).

`writing` names the audience collection the run writes; a partial unique index on it (`repository.py`,
`ONE_WRITER_INDEX`) lets one lease at a time carry a collection. So the lock costs no write of its own in
the common case: the claim that starts an attempt takes it (`LeaseStore.claim_and_start` / `start` with the
table), the lease's heartbeat renews it, `release` (hand over at shutdown) lets it expire with the lease,
and the write that stores the run's result ends it. A run that could not take it with its claim (another
run held the table) takes it here, before its first write, waiting while the holder's lease is live.

A dead holder blocks others one lease period at most: once its lease expired, the next writer clears the
field (guarded by the expiry) and takes the table; the take-over of the dead run itself finds the field
still on its lease when nobody took the table meanwhile, and continues from its checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from services.executor.ports import TableHold
from services.executor.repository import FINISHED, RUNNING, WRITING, ensure_one_writer_index
from shared.collections import ExecutorCollections
from shared.mongo import MongoClient, database_error


def _now() -> datetime:
    return datetime.now(UTC)


class MongoTableWriters:
    def __init__(self, client: MongoClient, db_name: str, lease_seconds: float) -> None:
        self.leases = client[db_name][ExecutorCollections.RUN_LEASES]
        self.lease_seconds = lease_seconds  # the lock lasts as long as the lease that carries it

    async def ensure_indexes(self) -> None:
        await ensure_one_writer_index(self.leases)

    async def acquire(self, table: str, run_id: str, owner: str) -> TableHold:
        try:
            for _ in range(3):  # a dead holder cleared: try again at once
                try:
                    before = await self.leases.find_one_and_update(
                        {"_id": run_id, "owner": owner, "status": RUNNING},
                        {"$set": {WRITING: table}},
                        {WRITING: 1},
                        return_document=ReturnDocument.BEFORE,
                    )
                except DuplicateKeyError:
                    holder = await self._holder(table)
                    if holder is None or not await self._clear_if_dead(table, holder):
                        return TableHold(
                            acquired=False, holder=None if holder is None else str(holder["_id"])
                        )
                    continue
                if before is None:  # the lease is lost: the heartbeat stops this copy
                    return TableHold(acquired=False)
                return TableHold(acquired=True, continued=before.get(WRITING) == table)
        except PyMongoError as exc:
            raise database_error(f"taking table {table} for run {run_id}", exc) from exc
        return TableHold(acquired=False)

    async def _holder(self, table: str) -> dict[str, Any] | None:
        return await self.leases.find_one({WRITING: table}, {"expires_at": 1, "status": 1})

    async def _clear_if_dead(self, table: str, holder: dict[str, Any]) -> bool:
        """The holder's lease expired (or its run ended without clearing it): the lock is free."""
        cleared = await self.leases.update_one(
            {"_id": holder["_id"], WRITING: table,
             "$or": [{"expires_at": {"$lt": _now()}}, {"status": FINISHED}]},
            {"$unset": {WRITING: ""}},
        )  # fmt: skip
        return cleared.modified_count == 1
