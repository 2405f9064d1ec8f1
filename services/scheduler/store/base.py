"""The scheduler's database: collections, indexes, transactions, and the outbox every part writes to
(`shared.outbox.Outbox`, the one every service with an outbox uses)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

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
)
from shared.mongo import MongoClient, database_errors, in_transaction
from shared.outbox import RETENTION, Outbox

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How long a transaction retries on conflicts before giving up for this pass (SCHEDULER_TRANSACTION_WAIT_SECONDS).
TRANSACTION_WAIT = timedelta(seconds=10)
# Indexes of earlier releases that every write paid for and no query needs any more (docs/guarantees.md).
RETIRED_INDEXES = ((LEDGER, "owner_1_slot_1"), (SCHEDULES, "part_1_expires_s_1"))


class SchedulerDb:
    """The collections and the transaction helper every part of the store shares."""

    def __init__(
        self, client: MongoClient, db_name: str, *, partitions: int = 16,
        transaction_wait: timedelta = TRANSACTION_WAIT, outbox_retention: timedelta = RETENTION,
    ) -> None:  # fmt: skip
        self.client = client
        self.db = client[db_name]
        self.partitions = partitions
        self.transaction_wait = transaction_wait
        self.schedules = self.db[SCHEDULES]
        self.ledger = self.db[LEDGER]
        self.outbox = Outbox(self.db[OUTBOX], retention=outbox_retention)
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
        await self.outbox.ensure_indexes()
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
