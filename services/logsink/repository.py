"""MongoDB adapter of the logsink: run records (with their progress), group-run records and run logs.

Per batch: one command for the run records (one statement per run), one for the log chunks and one
for the group-run records, each only when the batch has any; more only when a record refuses a run's
changes together (a redelivery, a late event) or a chunk was stored before.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError
from pymongo.write_concern import WriteConcern

from services.logsink.domain import Keyed, RunWrites
from services.logsink.ports import Written
from shared.collections import LogsinkCollections
from shared.errors import RetryableError
from shared.mongo import MongoClient, database_error, ensure_ttl_index
from shared.run_records import GroupRunField, RunField
from shared.runlogs import chunk_id, chunk_lines, chunk_rest

DUPLICATE_KEY = 11000
# A redelivered chunk's rest collides again only with chunks written meanwhile by another consumer.
MAX_CHUNK_ROUNDS = 8
# A batch is acknowledged only after it is on disk.
DURABLE = WriteConcern(w=1, j=True)

Document = dict[str, Any]


class MongoRunRecords:
    def __init__(
        self,
        client: MongoClient,
        db_name: str,
        *,
        log_retention_days: float = 30,
    ) -> None:
        db = client[db_name]
        self.runs = db.get_collection(LogsinkCollections.RUNS, write_concern=DURABLE)
        self.group_runs = db.get_collection(LogsinkCollections.GROUP_RUNS, write_concern=DURABLE)
        self.logs = db.get_collection(LogsinkCollections.RUN_LOGS, write_concern=DURABLE)
        self.db = db
        self.log_retention_seconds = int(log_retention_days * 86400)

    async def ensure_indexes(self) -> None:
        # What the catalog filters and sorts runs and group runs by.
        await self.runs.create_index([(RunField.JOB_ID, 1), (RunField.RUN_NUMBER, -1)])
        await self.runs.create_index([(RunField.REQUESTED_AT, -1)])
        await self.runs.create_index([(RunField.STARTED_AT, -1)])
        await self.runs.create_index([(RunField.GROUP_RUN_ID, 1)])
        await self.group_runs.create_index([(GroupRunField.GROUP_ID, 1), (GroupRunField.RUN_NUMBER, -1)])
        await self.group_runs.create_index([(GroupRunField.STARTED_AT, -1)])
        # Log chunks are read by `_id` range (`run:first`); they expire, run records are kept.
        await ensure_ttl_index(self.logs, "at", self.log_retention_seconds)

    async def write(
        self,
        *,
        logs: list[Document],
        runs: list[RunWrites],
        group_runs: list[Keyed],
    ) -> Written:
        """Write a batch; says which of its lines and changes were there already.

        Run records, group-run records and chunks are independent of one another, so their commands
        go out at once; a batch is acknowledged only when all of them are on disk.
        """
        try:
            duplicates, refused_runs, refused_groups = await asyncio.gather(
                self._insert_logs(logs), self._write_runs(runs), self._write_group_runs(group_runs)
            )
        except PyMongoError as exc:
            raise database_error("writing a batch", exc) from exc
        return Written(duplicates, refused_runs + refused_groups)

    async def _write_runs(self, runs: list[RunWrites]) -> Counter[str]:
        """Each run's changes in one statement, one unordered command for the batch. A run whose
        record refuses them together (its upsert met a record its guards exclude, or one inserted
        meanwhile by another logsink) takes them one by one, in order."""
        folded = [(w.together, w) for w in runs if w.together is not None]
        refused = await _bulk_ignoring_duplicates(
            self.runs, [UpdateOne(f, u, upsert=up) for (f, u, up), _ in folded]
        )
        one_by_one = [update for i, (_, w) in enumerate(folded) if i in refused for update in w.alone]
        one_by_one += [update for w in runs if w.together is None for update in w.alone]
        return await _ordered_updates(self.runs, one_by_one)

    async def _write_group_runs(self, updates: list[Keyed]) -> Counter[str]:
        """Order-tolerant updates in one unordered command; a refused upsert is looked at once more
        (the record may have been inserted meanwhile by another logsink)."""
        refused = await _bulk_ignoring_duplicates(
            self.group_runs, [UpdateOne(f, u, upsert=up) for _, (f, u, up) in updates]
        )
        return await _ordered_updates(self.group_runs, [updates[i] for i in sorted(refused)])

    async def _insert_logs(self, lines: list[Document]) -> int:
        """Store lines in chunks; returns how many were stored already.

        A chunk whose `_id` is taken was (partly) written before, by a delivery of the same lines:
        the lines the run's stored chunks in its range hold are dropped, the rest written again.
        """
        pending = chunk_lines(lines)
        stored = 0
        for _ in range(MAX_CHUNK_ROUNDS):
            taken = await _bulk_ignoring_duplicates(self.logs, [InsertOne(c) for c in pending])
            stored += sum(len(c["lines"]) for i, c in enumerate(pending) if i not in taken)
            if not taken:
                return len(lines) - stored
            pending = await self._rests([pending[i] for i in sorted(taken)])
        raise RetryableError("log chunks kept colliding with chunks written meanwhile")

    async def _rests(self, chunks: list[Document]) -> list[Document]:
        ranges = [{"_id": {"$gte": c["_id"], "$lte": chunk_id(c["run_id"], c["last"])}} for c in chunks]
        stored: dict[str, list[tuple[int, int]]] = {}
        async for doc in self.logs.find({"$or": ranges}, {"run_id": 1, "first": 1, "last": 1}):
            stored.setdefault(doc["run_id"], []).append((doc["first"], doc["last"]))
        return [rest for c in chunks for rest in chunk_rest(c, stored.get(c["run_id"], []))]


async def _bulk_ignoring_duplicates(
    collection: AsyncCollection[Document],
    writes: list[InsertOne[Document]] | list[UpdateOne],
) -> set[int]:
    """Unordered writes; returns the indexes of those that hit a duplicate `_id` (already stored, or
    an upsert whose filter excluded the record that exists)."""
    if not writes:
        return set()
    try:
        await collection.bulk_write(writes, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error["code"] != DUPLICATE_KEY for error in errors) or exc.details.get("writeConcernErrors"):
            raise
        return {int(error["index"]) for error in errors}
    return set()


async def _ordered_updates(collection: AsyncCollection[Document], updates: list[Keyed]) -> Counter[str]:
    """Updates in order; returns the kinds of the upserts refused (a duplicate key: the record exists
    and their filter excludes it, so they change nothing), which are skipped."""
    refused: Counter[str] = Counter()
    remaining = updates
    while remaining:
        try:
            await collection.bulk_write(
                [UpdateOne(f, u, upsert=up) for _, (f, u, up) in remaining], ordered=True
            )
            break
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or errors[0]["code"] != DUPLICATE_KEY or exc.details.get("writeConcernErrors"):
                raise
            index = int(errors[0]["index"])
            refused[remaining[index][0]] += 1
            remaining = remaining[index + 1 :]
    return refused
