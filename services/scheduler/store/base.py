"""The scheduler's database: collections, indexes, transactions, and the outbox every part writes to."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from services.scheduler.store.documents import (
    EPOCH,
    GROUP_RUNS,
    INSTANCES,
    LEDGER,
    OUTBOX,
    PARTITIONS,
    SCHEDULES,
    Doc,
    epoch_seconds,
)
from shared.contracts import MESSAGE_TYPES, Envelope
from shared.mongo import MongoClient, database_errors, in_transaction

logger = logging.getLogger(__name__)
T = TypeVar("T")

RELAY_CLAIM = timedelta(seconds=30)
# How long a transaction retries on conflicts before giving up for this pass (SCHEDULER_TRANSACTION_WAIT_SECONDS).
TRANSACTION_WAIT = timedelta(seconds=10)
# Indexes of earlier releases that every write paid for and no query needs any more (docs/guarantees.md).
RETIRED_INDEXES = ((LEDGER, "owner_1_slot_1"), (SCHEDULES, "part_1_expires_s_1"))


def outbox_doc(messages: Sequence[Envelope], now: datetime, request_id: str | None = None) -> Doc:
    """One outbox entry per transaction: the messages it must publish, in order."""
    doc: Doc = {
        "_id": uuid.uuid4().hex,
        "messages": [m.model_dump_json() for m in messages],
        "types": [m.type for m in messages],
        "published": False,
        "created_at": now,
        "created_s": epoch_seconds(now),
        "relay_until": EPOCH,
    }
    if request_id is not None:
        doc["request_id"] = request_id
    return doc


def decode_outbox(doc: Doc) -> list[Envelope]:
    return [
        MESSAGE_TYPES[kind].model_validate_json(body)
        for kind, body in zip(doc["types"], doc["messages"], strict=True)
    ]


class SchedulerDb:
    """The collections and the transaction helper every part of the store shares."""

    def __init__(
        self, client: MongoClient, db_name: str, *, partitions: int = 16, transaction_wait: timedelta = TRANSACTION_WAIT
    ) -> None:  # fmt: skip
        self.client = client
        self.db = client[db_name]
        self.partitions = partitions
        self.transaction_wait = transaction_wait
        self.schedules = self.db[SCHEDULES]
        self.ledger = self.db[LEDGER]
        self.outbox = self.db[OUTBOX]
        self.group_runs = self.db[GROUP_RUNS]
        self.partition_leases = self.db[PARTITIONS]
        self.instances = self.db[INSTANCES]

    async def ensure_indexes(self) -> None:
        # Every secondary index of `schedule_state` and `fire_ledger` is rewritten by every fire's
        # write, so there are as few as the queries need: the ledger's `_id` ("owner|slot") is its
        # unique key, and `expires_s` / `trigger` are sparse (written only when set).
        await self._drop_retired_indexes()
        await self.schedules.create_index([("part", ASCENDING), ("due", ASCENDING)])
        await self.schedules.create_index("due")  # the ticker's probe over all its partitions
        await self.schedules.create_index("expires_s", sparse=True)
        await self.schedules.create_index("trigger", sparse=True)
        await self.outbox.create_index("request_id", unique=True, sparse=True)
        await self.outbox.create_index([("published", ASCENDING), ("created_s", ASCENDING)])
        await self.group_runs.create_index("current_run_id")
        existing = {doc["_id"] async for doc in self.partition_leases.find({}, {"_id": 1})}
        missing = [
            {"_id": p, "owner": None, "until": EPOCH} for p in range(self.partitions) if p not in existing
        ]
        if missing:
            try:
                await self.partition_leases.insert_many(missing, ordered=False)
            except PyMongoError:  # another replica created them at the same moment
                logger.debug("partition documents already created")

    async def _drop_retired_indexes(self) -> None:
        for collection, name in RETIRED_INDEXES:
            # Not there: never created here, or another replica dropped it first.
            with contextlib.suppress(OperationFailure):
                await self.db[collection].drop_index(name)

    async def transaction(self, work: Callable[[AsyncClientSession], Awaitable[T]]) -> T:
        """Run `work` in a transaction, retried on transient conflicts for at most `transaction_wait`.

        A conflict usually means another transaction holds the same documents: a replica's that
        is still running, or a killed one's that the server has not reaped yet. The wait is
        bounded (the slot stays due and the next pass fires it) and logged, never silent.
        """
        attempts, started = 0, time.monotonic()

        async def attempt(session: AsyncClientSession) -> T:
            nonlocal attempts
            attempts += 1
            return await work(session)

        try:
            with database_errors("a scheduler transaction", passing=(DuplicateKeyError,)):
                return await in_transaction(
                    self.client, attempt, timeout=self.transaction_wait.total_seconds()
                )
        finally:
            if attempts > 1:
                waited = round(time.monotonic() - started, 3)
                logger.warning(
                    "waited on a conflicting transaction",
                    extra={"attempts": attempts, "waited_seconds": waited},
                )

    async def add_outbox(
        self, session: AsyncClientSession, messages: Sequence[Envelope], wall: datetime, request_id: str | None = None
    ) -> str | None:  # fmt: skip
        """Store the messages a transaction must publish (one entry); its id, None when there are none."""
        if not messages:
            return None
        entry = outbox_doc(messages, wall, request_id=request_id)
        await self.outbox.insert_one(entry, session=session)
        return str(entry["_id"])


class OutboxStore:
    """What was committed but maybe not yet published: marked after the confirms, relayed otherwise."""

    def __init__(self, db: SchedulerDb) -> None:
        self.outbox = db.outbox

    async def mark_published(self, entry_id: str) -> None:
        try:
            await self.outbox.update_one({"_id": entry_id}, {"$set": {"published": True}})
        except PyMongoError as exc:
            logger.warning("could not mark an outbox entry published", extra={"error": str(exc)})

    async def mark_published_many(self, entry_ids: Sequence[str]) -> None:
        """Several entries confirmed together (a run-now batch): one update."""
        if not entry_ids:
            return
        try:
            await self.outbox.update_many({"_id": {"$in": list(entry_ids)}}, {"$set": {"published": True}})
        except PyMongoError as exc:
            logger.warning("could not mark outbox entries published", extra={"error": str(exc)})

    async def prune_published(self, before: datetime) -> int:
        """Delete the published entries created before `before`: the relay never needs them again, and a
        run-now entry's `request_id` only answers a redelivered command, whose deadline has long passed."""
        try:
            result = await self.outbox.delete_many(
                {"published": True, "created_s": {"$lt": epoch_seconds(before)}}
            )
        except PyMongoError as exc:
            logger.warning("could not prune the outbox", extra={"error": str(exc)})
            return 0
        return int(result.deleted_count)

    async def claim_unpublished(self, older_than: datetime, now: datetime, limit: int = 100) -> list[Doc]:
        """Unpublished entries older than `older_than`, claimed for a while so replicas do not race."""
        cutoff = epoch_seconds(older_than)
        found = await self.outbox.find(
            {"published": False, "created_s": {"$lte": cutoff}}, {"_id": 1, "relay_until": 1}
        ).to_list(limit)
        claimed: list[Doc] = []
        for doc in found:
            if doc["relay_until"] > now:
                continue
            result = await self.outbox.update_one(
                {"_id": doc["_id"], "published": False, "relay_until": doc["relay_until"]},
                {"$set": {"relay_until": now + RELAY_CLAIM}},
            )
            taken = await self.outbox.find_one({"_id": doc["_id"]}) if result.modified_count else None
            if taken is not None:
                claimed.append(taken)
        return claimed

    async def unpublished_count(self) -> int:
        return await self.outbox.count_documents({"published": False})


def ids_of(docs: Sequence[Doc]) -> list[Any]:
    return [d["_id"] for d in docs]
