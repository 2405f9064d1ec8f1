"""Firing due slots: ledger entries, run allocation, schedule advance and outbox in one transaction.

Exactly once: a slot's ledger entry (unique on owner and slot) and the schedule's advance past it
commit together with the outbox entry holding the `RunRequested`. Each schedule document is updated
only if it is still what the planner read (`next_slot`, `last_run`, `version`, `active`), so a replica that lost its partition to another one commits nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
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
from services.scheduler.store.base import StoreBase, outbox_doc
from services.scheduler.store.documents import Doc, ScheduleDoc, display_next_run, epoch_seconds
from shared.contracts import Envelope, RunRequested

# `running` is not guarded (a null match is slow on the embedded server): `last_run` changes with
# every run allocation, and `running` is only written when this transaction allocates a run.
GUARDED = ("next_slot", "last_run", "version", "active")


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


Planner = Callable[[ScheduleDoc], SlotPlan]


class FireStore(StoreBase):
    async def due(self, part: int, now_s: int, limit: int) -> list[ScheduleDoc]:
        # Oldest first: when a pass runs late, schedules not yet fired go before those due again.
        query = self.schedules.find({"part": part, "due": {"$lte": now_s}}).sort("due", 1)
        return [ScheduleDoc(d) for d in await query.to_list(limit)]

    async def recorded(
        self, session: AsyncClientSession, owner: str, due: tuple[datetime, ...]
    ) -> list[tuple[datetime, datetime]]:
        """(slot, until) of the owner's ledger entries that may cover any of the `due` slots."""
        if not due:
            return []
        query = {
            "owner": owner,
            "slot": {"$lte": due[-1]},
            "$or": [{"slot": {"$gte": due[0]}}, {"until": {"$gte": due[0]}}],
        }
        docs = await self.ledger.find(query, {"slot": 1, "until": 1}, session=session).to_list(None)
        return [(d["slot"], d.get("until") or d["slot"]) for d in docs]

    async def fire_jobs(self, works: Sequence[Work], now: datetime, wall: datetime) -> FireResult:
        """Commit the plans of job schedules in one transaction; on a conflict, one by one."""
        if not works:
            return FireResult()
        try:
            return await self.transaction(lambda s: self._fire(s, works, now, wall))
        except (ClaimLost, DuplicateKeyError):
            return FireResult()  # the caller retries these one at a time with fresh documents

    async def fire_one(self, key: str, planner: Planner, now: datetime, wall: datetime) -> FireResult:
        """Re-read one schedule inside the transaction, re-plan it and fire what is still unfired."""

        async def work(session: AsyncClientSession) -> FireResult:
            raw = await self.schedules.find_one({"_id": key}, session=session)
            if raw is None or raw.get("next_slot") is None or raw["next_slot"] > now:
                return FireResult()
            doc = ScheduleDoc(raw)
            plan = planner(doc)
            fired = unrecorded(plan.all_due, await self.recorded(session, doc.id, plan.all_due))
            plan = SlotPlan(
                candidates=tuple(s for s in plan.candidates if s in fired),
                missed=tuple(s for s in plan.missed if s in fired),
                next_slot=plan.next_slot,
            )
            return await self._fire(session, [Work(doc, plan)], now, wall)

        try:
            return await self.transaction(work)
        except ClaimLost:
            return FireResult()

    async def _fire(
        self, session: AsyncClientSession, works: Sequence[Work], now: datetime, wall: datetime
    ) -> FireResult:
        result = FireResult()
        ledger: list[InsertOne[Doc]] = []
        updates: list[UpdateOne] = []
        messages: list[Envelope] = []
        for work in works:
            entries, update, message = _fire_job(work, now, wall, result)
            ledger += [InsertOne(e) for e in entries]
            updates.append(update)
            if message is not None:
                messages.append(message)
        if ledger:
            await self.ledger.bulk_write(ledger, ordered=True, session=session)
        written = await self.schedules.bulk_write(updates, ordered=False, session=session)
        if written.matched_count != len(updates):
            raise ClaimLost(f"{len(updates) - written.matched_count} schedules changed meanwhile")
        if messages:
            entry = outbox_doc(messages, wall)
            await self.outbox.insert_one(entry, session=session)
            result.outbox_id = entry["_id"]
        result.messages = messages
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
    guard = {"_id": doc.id} | {k: doc.raw.get(k) for k in GUARDED}
    changes = {
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
