"""The executor's settings and its in-memory view of the runs it holds (running or waiting for a slot)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from services.executor.exporters.run import ExportSettings
from services.executor.importers.context import ImportSettings
from services.executor.ports import Claim
from services.executor.reporting import RunReporter
from services.executor.repository import MongoRejectStore
from shared.contracts import RunRequested

STOP_REQUESTED, LEASE_LOST, TABLE_LOST, TIMED_OUT = "stop requested", "lease lost", "table lost", "timed out"
TABLE_LOST_MESSAGE = (
    "lost the table's writer lock (this executor did not renew it for a lease period); "
    "the next attempt waits for the table and loads the file from the start"
)


@dataclass(frozen=True)
class ExecutionSettings:
    executor_id: str
    concurrency: int
    lease_seconds: float
    progress_interval: float
    max_attempts: int
    retry_backoff: float
    imports: ImportSettings
    exports: ExportSettings = field(default_factory=ExportSettings)
    table_poll_seconds: float = 1.0  # longest pause between two tries of a busy table's writer lock
    log_flush_seconds: float = 1.0  # how long log lines wait for one write recording their numbers


@dataclass
class ActiveRun:
    request: RunRequested
    task: asyncio.Task[None] | None = None
    claim: Claim | None = None  # its attempt, once it has a slot
    reporter: RunReporter | None = None  # its events, once started
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started: bool = False  # past its wait for a slot
    has_slot: bool = False
    tables: set[str] = field(default_factory=set)  # collections whose writer lock the run holds
    table_continued: bool = False  # the lock held was the run's before this claim (nobody wrote since)
    rejects: MongoRejectStore | None = None  # what its imports save rejects with (one per claim)
    halted_for: set[str] = field(default_factory=set)  # why `stop` is set
    # When the write that last extended the lease (and the table lock on it) was sent (time.monotonic()).
    lease_extended_at: float = field(default_factory=time.monotonic)

    def took_table(self, claim: Claim) -> None:
        if claim.table is not None:
            self.tables, self.table_continued = {claim.table}, claim.continued

    def halt(self, reason: str) -> None:
        self.halted_for.add(reason)
        self.stop.set()

    def resume_after_table_lost(self) -> None:
        """Only the lost hold stopped the attempt: the next one may run (and takes the table again)."""
        self.halted_for.clear()
        self.stop.clear()
        self.tables.clear()


class LocalWriters:
    """Which run of this executor holds a collection's writer lock. A run here that needs the table waits
    for the other run here without asking the database, and wakes the moment it lets go; the database's
    lock (on the lease) stays the rule: the run still takes it there before writing."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, asyncio.Event]] = {}

    def other_holder(self, collection: str, run_id: str) -> tuple[str, asyncio.Event] | None:
        held = self._held.get(collection)
        return held if held is not None and held[0] != run_id else None

    def took(self, collection: str, run_id: str) -> None:
        held = self._held.get(collection)
        if held is not None and held[0] == run_id:
            return
        if held is not None:  # it lost the lock to this run: its waiters look again
            held[1].set()
        self._held[collection] = (run_id, asyncio.Event())

    def let_go(self, collections: set[str], run_id: str) -> None:
        for collection in collections:
            held = self._held.get(collection)
            if held is not None and held[0] == run_id:
                del self._held[collection]
                held[1].set()


async def wait_for_slot(slots: asyncio.Semaphore, active: ActiveRun) -> bool:
    """Wait for one of the executor's slots. True once the run has one, or was asked to stop (it then
    ends at once as stopped); False when its lease was lost meanwhile (another executor has it)."""
    acquire = asyncio.ensure_future(slots.acquire())
    halted = asyncio.ensure_future(active.stop.wait())
    try:
        await asyncio.wait({acquire, halted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        halted.cancel()
        if not acquire.done():
            acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
    active.has_slot = acquire.done() and not acquire.cancelled()
    active.started = active.has_slot or LEASE_LOST not in active.halted_for
    return active.started
