"""Firing due slots: ledger entries, run allocation, schedule advance and outbox in one transaction.

Exactly once: a slot's ledger entry (its `_id` is "owner|slot", unique) and the schedule's advance
past it commit together with the outbox entry holding the `RunRequested`. The due schedules are read
*inside* that transaction: a write another transaction or replica commits to one of them after the
read makes this transaction's update of it a write conflict, so it is retried on fresh documents
(`SchedulerDb.transaction`). That carries what a four-field guard on every update used to; each
update keeps a one-field guard (`next_slot`, the cursor) and the batch is refused if one misses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.scheduler.domain import (
    Outcome,
    SlotPlan,
    decide,
    ledger_key,
    missed_range,
    scheduled_run_requested,
    unrecorded,
)
from services.scheduler.domain.runs import next_run_id
from services.scheduler.store.base import SchedulerDb
from services.scheduler.store.documents import Doc, ScheduleDoc, display_next_run, epoch_seconds
from shared.contracts import Envelope, RunRequested


class ClaimLost(Exception):
    """A schedule changed since it was read (another replica fired it, or the catalog changed it)."""


@dataclass(frozen=True)
class Work:
    doc: ScheduleDoc
    plan: SlotPlan


@dataclass
class FireResult:
    outcomes: list[tuple[str, datetime, Outcome]] = field(default_factory=list)
    outbox_id: str | None = None
    messages: list[Envelope] = field(default_factory=list)

    def extend(self, other: FireResult) -> None:
        self.outcomes += other.outcomes
        self.messages += other.messages


@dataclass
class FireBatch:
    """One transaction's worth of a partition's due schedules."""

    result: FireResult
    seen: int  # due schedules read
    singles: list[str] = field(default_factory=list)  # to fire one at a time: groups, or a refused batch


@dataclass
class PartitionWork:
    """Which of a replica's partitions have a slot due, from one probe.

    `complete` is False when the probe hit its limit: then the caller treats every partition it holds
    as having work (the probe only saves queries when there is little to do; it never hides work).
    """

    due: set[int] = field(default_factory=set)
    complete: bool = True


Planner = Callable[[ScheduleDoc], SlotPlan]


async def recorded(
    ledger: AsyncCollection[Doc], session: AsyncClientSession, owner: str, due: tuple[datetime, ...]
) -> list[tuple[datetime, datetime]]:
    """(slot, until) of the owner's ledger entries that may cover any of the `due` slots.

    The owner's entries are the `_id` range "owner|" … "owner}" ('}' follows '|'): no index besides `_id`.
    """
    if not due:
        return []
    query = {
        "_id": {"$gte": f"{owner}|", "$lt": f"{owner}}}"},
        "slot": {"$lte": due[-1]},
        "$or": [{"slot": {"$gte": due[0]}}, {"until": {"$gte": due[0]}}],
    }
    docs = await ledger.find(query, {"slot": 1, "until": 1}, session=session).to_list(None)
    return [(d["slot"], d.get("until") or d["slot"]) for d in docs]


class FireStore:
    def __init__(self, db: SchedulerDb) -> None:
        self.db = db
        self.schedules = db.schedules
        self.ledger = db.ledger

    async def due(self, part: int, now_s: int, limit: int) -> list[ScheduleDoc]:
        # Oldest first: when a pass runs late, schedules not yet fired go before those due again.
        query = self.schedules.find({"part": part, "due": {"$lte": now_s}}).sort("due", 1)
        return [ScheduleDoc(d) for d in await query.to_list(limit)]

    async def partition_work(self, parts: Sequence[int], now_s: int, limit: int) -> PartitionWork:
        """One query for all of `parts`: which have a slot due by `now_s`.

        An idle replica's probe costs this one query, however many partitions it holds. It reads the
        `due` index alone and keeps this replica's partitions here: the embedded server scans the
        whole collection for any filter its index does not cover (`part: {$in}`, `$or`).
        """
        if not parts:
            return PartitionWork()
        docs = await self.schedules.find({"due": {"$lte": now_s}}, {"part": 1}).to_list(limit)
        held = set(parts)
        return PartitionWork({p for d in docs if (p := d.get("part")) in held}, complete=len(docs) < limit)

    async def fire_due(
        self, part: int, cutoff: int, limit: int, planner: Planner, now: datetime, wall: datetime
    ) -> FireBatch:
        """Read up to `limit` due schedules of `part` and fire the jobs among them, in one transaction.

        Groups, and every schedule of a batch refused (a slot already in the ledger, a schedule
        changed under a one-field guard), are left to the caller to fire one at a time.
        """

        due = {"part": part, "due": {"$lte": cutoff}}

        async def work(session: AsyncClientSession) -> FireBatch:
            query = self.schedules.find(due, session=session)
            docs = [ScheduleDoc(d) for d in await query.sort("due", 1).to_list(limit)]
            jobs = [Work(d, planner(d)) for d in docs if d.kind == "job"]
            result = await self._fire(session, jobs, now, wall)
            return FireBatch(result, len(docs), [d.id for d in docs if d.kind == "group"])

        if await self.schedules.find_one(due, {"_id": 1}) is None:
            return FireBatch(FireResult(), 0)  # an idle pass opens no transaction
        try:
            return await self.db.transaction(work)
        except (ClaimLost, DuplicateKeyError):
            docs = await self.due(part, cutoff, limit)
            return FireBatch(FireResult(), len(docs), [d.id for d in docs])

    async def fire_one(self, key: str, planner: Planner, now: datetime, wall: datetime) -> FireResult:
        """Re-read one schedule inside the transaction, re-plan it and fire what is still unfired."""

        async def work(session: AsyncClientSession) -> FireResult:
            raw = await self.schedules.find_one({"_id": key}, session=session)
            if raw is None or raw.get("next_slot") is None or raw["next_slot"] > now:
                return FireResult()
            doc = ScheduleDoc(raw)
            plan = planner(doc)
            fired = unrecorded(plan.all_due, await recorded(self.ledger, session, doc.id, plan.all_due))
            plan = SlotPlan(
                candidates=tuple(s for s in plan.candidates if s in fired),
                missed=tuple(s for s in plan.missed if s in fired),
                next_slot=plan.next_slot,
            )
            return await self._fire(session, [Work(doc, plan)], now, wall)

        try:
            return await self.db.transaction(work)
        except ClaimLost:
            return FireResult()

    async def _fire(
        self, session: AsyncClientSession, works: Sequence[Work], now: datetime, wall: datetime
    ) -> FireResult:
        """One bulk ledger insert, one bulk of cursor-guarded updates, one outbox entry."""
        result = FireResult()
        ledger: list[Doc] = []
        updates: list[UpdateOne] = []
        for work in works:
            entries, update, message = _fire_job(work, now, wall, result)
            ledger += entries
            updates.append(update)
            if message is not None:
                result.messages.append(message)
        if ledger:
            await self.ledger.insert_many(ledger, ordered=True, session=session)
        if updates:
            written = await self.schedules.bulk_write(updates, ordered=False, session=session)
            if written.matched_count != len(updates):
                raise ClaimLost(f"{len(updates) - written.matched_count} schedules changed meanwhile")
        result.outbox_id = await self.db.add_outbox(session, result.messages, wall)
        return result


def _fire_job(
    work: Work, now: datetime, wall: datetime, result: FireResult
) -> tuple[list[Doc], UpdateOne, RunRequested | None]:
    doc, plan = work.doc, work.plan
    entries = missed_entries(doc.id, plan.missed, wall)
    result.outcomes += [(doc.id, s, Outcome.MISSED) for s in plan.missed]
    running, last_run, message = doc.running, doc.last_run, None
    previous = doc.raw.get("previous_run")
    snapshot = doc.snapshot
    for slot in plan.candidates:
        outcome = decide(slot, active=doc.active, expires_at=doc.expires_at, running=running is not None)
        if outcome is Outcome.REQUESTED and snapshot is None:
            outcome = Outcome.INACTIVE  # never announced by the catalog: nothing to run
        run_id = None
        if outcome is Outcome.REQUESTED and snapshot is not None:
            rid = next_run_id(doc.owner_id, last_run)
            message = scheduled_run_requested(snapshot, rid, now, slot=slot)
            run_id, running, last_run, previous = str(rid), str(rid), rid.number, slot
        entries.append(_entry(doc.id, slot, outcome, wall, run_id))
        result.outcomes.append((doc.id, slot, outcome))
    guard = {"_id": doc.id, "next_slot": doc.next_slot}
    changes: dict[str, Any] = {
        "next_slot": plan.next_slot,
        "due": epoch_seconds(plan.next_slot),
        "next_run": display_next_run(doc.schedule, plan.next_slot, doc.active),
        "previous_run": previous,
    }
    if message is not None:
        changes |= {"running": running, "last_run": last_run}
    return entries, UpdateOne(guard, {"$set": changes}), message


def _entry(
    owner: str, slot: datetime | str, outcome: Outcome, wall: datetime, run_id: str | None = None
) -> Doc:
    entry: Doc = {
        "_id": ledger_key(owner, slot),
        "owner": owner,
        "slot": slot,
        "outcome": outcome.value,
        "skipped": outcome.skipped,
        "recorded_at": wall,
    }
    if run_id is not None:
        entry["run_id"] = run_id
    return entry


ledger_entry = _entry


def missed_entries(owner: str, missed: Sequence[datetime], wall: datetime) -> list[Doc]:
    """A pass's missed slots as ONE ledger entry (its first slot, `until` its last, and the count)."""
    span = missed_range(missed)
    if span is None:
        return []
    return [_entry(owner, span.first, Outcome.MISSED, wall) | {"until": span.last, "missed": span.count}]
