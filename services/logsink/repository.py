"""MongoDB adapter of the logsink: run records, their progress, group-run records, run logs and applied
event ids."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, InsertOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError
from pymongo.write_concern import WriteConcern

from services.logsink.domain import Update, newer_than_stored
from shared.errors import RetryableError
from shared.mongo import MongoClient
from shared.runlogs import chunk_id, chunk_lines, chunk_rest

DUPLICATE_KEY = 11000
# A redelivered chunk's rest collides again only with chunks written meanwhile by another consumer.
MAX_CHUNK_ROUNDS = 8
INDEX_OPTIONS_CONFLICT = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
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
        event_ids_retention_days: float = 14,
    ) -> None:
        db = client[db_name]
        self.runs = db.get_collection("runs", write_concern=DURABLE)
        self.group_runs = db.get_collection("group_runs", write_concern=DURABLE)
        self.logs = db.get_collection("run_logs", write_concern=DURABLE)
        self.progress = db.get_collection("run_progress", write_concern=DURABLE)
        self.applied = db.get_collection("applied_events", write_concern=DURABLE)
        self.db = db
        self.log_retention_seconds = int(log_retention_days * 86400)
        self.event_ids_retention_seconds = int(event_ids_retention_days * 86400)

    async def ensure_indexes(self) -> None:
        await self.runs.create_index([("job_id", 1), ("run_number", -1)])
        await self.runs.create_index([("requested_at", -1)])
        await self.runs.create_index([("started_at", -1)])
        await self.runs.create_index([("group_run_id", 1)])
        await self.group_runs.create_index([("group_id", 1), ("run_number", -1)])
        await self.group_runs.create_index([("started_at", -1)])
        # Log chunks are read by `_id` range (`run:first`); they expire, run records are kept.
        await self._ttl_index(self.logs, "at", self.log_retention_seconds)
        await self._ttl_index(self.applied, "at", self.event_ids_retention_seconds)

    async def _ttl_index(self, collection: AsyncCollection[Document], key: str, seconds: int) -> None:
        try:
            await collection.create_index([(key, ASCENDING)], expireAfterSeconds=seconds)
        except OperationFailure as exc:
            if exc.code not in INDEX_OPTIONS_CONFLICT:
                raise
            # The retention changed: adjust the existing TTL index in place.
            await self.db.command(
                "collMod", collection.name, index={"keyPattern": {key: 1}, "expireAfterSeconds": seconds}
            )

    async def already_applied(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        try:
            cursor = self.applied.find({"_id": {"$in": list(event_ids)}}, {"_id": 1})
            return {doc["_id"] async for doc in cursor}
        except PyMongoError as exc:
            raise RetryableError(f"database error while reading applied events: {exc}") from exc

    async def write(
        self,
        *,
        logs: list[Document],
        runs: list[Update],
        group_runs: list[Update],
        applied_ids: list[str],
        progress: list[Document],
    ) -> int:
        """Write a batch; returns how many of the `logs` lines were stored already (duplicates).

        Updates of runs and group runs keep their order (each event's writes are order-tolerant across
        events, but `RunStarted`'s three writes rely on their order); a stale upsert against a
        terminal record fails with a duplicate key and is skipped. Event ids are recorded last, so a
        crash in between only means an idempotent re-application.
        """
        try:
            duplicates, *_ = await asyncio.gather(
                self._insert_logs(logs),
                _ordered_updates(self.runs, runs),
                _ordered_updates(self.group_runs, group_runs),
                self._replace_progress(progress),
            )
            if applied_ids:
                now = datetime.now(UTC)
                inserts = [InsertOne({"_id": event_id, "at": now}) for event_id in applied_ids]
                await _bulk_ignoring_duplicates(self.applied, inserts)
        except PyMongoError as exc:
            raise RetryableError(f"database error while writing a batch: {exc}") from exc
        return duplicates

    async def _replace_progress(self, snapshots: list[Document]) -> None:
        # A duplicate `_id` means the stored snapshot is newer (or the same): skipped.
        replaces = [ReplaceOne(newer_than_stored(s), s, upsert=True) for s in snapshots]
        await _bulk_ignoring_duplicates(self.progress, replaces)

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
    collection: AsyncCollection[Document], writes: list[InsertOne[Document]] | list[ReplaceOne[Document]]
) -> set[int]:
    """Unordered writes; returns the indexes of those that hit a duplicate `_id` (already stored)."""
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


async def _ordered_updates(collection: AsyncCollection[Document], updates: list[Update]) -> None:
    remaining = [UpdateOne(filter_, update, upsert=upsert) for filter_, update, upsert in updates]
    while remaining:
        try:
            await collection.bulk_write(remaining, ordered=True)
            return
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if not errors or errors[0]["code"] != DUPLICATE_KEY or exc.details.get("writeConcernErrors"):
                raise
            # The upsert's filter excluded a terminal record that exists: stale, skip it, go on.
            remaining = remaining[int(errors[0]["index"]) + 1 :]
