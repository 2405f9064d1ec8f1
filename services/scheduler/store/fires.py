"""Firing due slots: ledger entries, run allocation, schedule advance and outbox in one transaction.

Exactly once: a slot's ledger entry (its `_id` is "owner|slot", unique) and the schedule's advance
past it commit together with the outbox entry holding the `RunRequested`. The due schedules are read
*inside* that transaction: a write another transaction or replica commits to one of them after the
read makes this transaction's update of it a write conflict, so it is retried on fresh documents
(`SchedulerDb.transaction`). That carries what a four-field guard on every update used to; each
update keeps a one-field guard (`next_slot`, the cursor) and the batch is refused if one misses.

Cost at scale (bench/scheduler_scale.py): the embedded server fetches every document a query's
index range holds before it applies a limit, so a partition's due schedules are listed once per pass
(`_id`s only, `DueIds`) and each transaction re-reads its batch by `_id` (with the due filter, so one
fired or changed meanwhile is left out). The schedules a batch advances alike (same cursor, same next
slot) are one `update_many` with a pipeline that derives the run number from the document it updates
(the values the transaction read: a concurrent write is a conflict), not one statement each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

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
from shared import tracing
from shared.contracts import Envelope, RunRequested

DUPLICATE_KEY = 11000


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
    # False: the messages need no order among them (one run request per schedule), published at once.
    ordered: bool = True
    traceparents: list[str | None] = field(default_factory=list)  # per message ([]: the caller's context)


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


# `_id`s of a partition's due schedules listed in one query, fired over the next transactions.
DUE_IDS_LIMIT = 20_000


@dataclass
class DueIds:
    """The due `_id`s one listing of a partition found for a pass (its `cutoff`), not yet fired."""

    cutoff: int
    ids: list[str]
    complete: bool  # the listing held every due schedule (it did not hit DUE_IDS_LIMIT)


class FireStore:
    def __init__(self, db: SchedulerDb) -> None:
        self.db = db
        self.schedules = db.schedules
        self.ledger = db.ledger
        self._due_ids: dict[int, DueIds] = {}

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
        """Read the next `limit` due schedules of `part` and fire the jobs among them, in one transaction.

        The batch comes from this pass's listing of the partition's due `_id`s (`_next_ids`) and is
        re-read inside the transaction, due filter included.

        Groups, and every schedule of a batch refused (a slot already in the ledger, a schedule
        changed under a one-field guard), are left to the caller to fire one at a time.
        """

        due = {"part": part, "due": {"$lte": cutoff}}
        chunk = await self._next_ids(part, cutoff, limit)
        if not chunk:
            return FireBatch(FireResult(), 0)  # an idle pass opens no transaction
        # More to come in this pass: report a full batch so the caller asks again (ids skipped below
        # were fired or changed meanwhile, not missing).
        seen = limit if part in self._due_ids else len(chunk)
        query = {"_id": {"$in": chunk}} | due

        async def work(session: AsyncClientSession) -> FireBatch:
            found = self.schedules.find(query, session=session)
            docs = [ScheduleDoc(d) for d in await found.sort("due", 1).to_list(None)]
            jobs = [Work(d, planner(d)) for d in docs if d.kind == "job"]
            result = await self._fire(session, jobs, now, wall)
            return FireBatch(result, seen, [d.id for d in docs if d.kind == "group"])

        try:
            return await self.db.transaction(work)
        except (ClaimLost, DuplicateKeyError):
            return FireBatch(FireResult(), seen, chunk)  # each re-read and fired on its own
        except BaseException:
            self._due_ids.pop(part, None)  # listed again by the next pass
            raise

    async def _next_ids(self, part: int, cutoff: int, limit: int) -> list[str]:
        """The next `limit` due `_id`s of `part`: from this pass's listing, listed when there is none."""
        pending = self._due_ids.get(part)
        if pending is None or pending.cutoff != cutoff or (not pending.ids and not pending.complete):
            query = self.schedules.find({"part": part, "due": {"$lte": cutoff}}, {"_id": 1})
            docs = await query.sort("due", 1).to_list(DUE_IDS_LIMIT)
            pending = DueIds(cutoff, [str(d["_id"]) for d in docs], complete=len(docs) < DUE_IDS_LIMIT)
        chunk, pending.ids = pending.ids[:limit], pending.ids[limit:]
        if pending.ids or not pending.complete:
            self._due_ids[part] = pending
        else:
            self._due_ids.pop(part, None)
        return chunk

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
                next_due=plan.next_due,
                fire_times=plan.fire_times,
            )
            if not plan.all_due:  # reached its slot but not its spread fire time yet
                return FireResult()
            return await self._fire(session, [Work(doc, plan)], now, wall)

        try:
            return await self.db.transaction(work)
        except ClaimLost:
            return FireResult()

    async def _fire(
        self, session: AsyncClientSession, works: Sequence[Work], now: datetime, wall: datetime
    ) -> FireResult:
        """One bulk ledger insert, one cursor-guarded `update_many` per alike advance, one outbox entry."""
        result = FireResult(ordered=False)
        ledger: list[Doc] = []
        advances: dict[Advance, list[str]] = {}
        for work in works:
            entries, advance, message = _fire_job(work, now, wall, result)
            ledger += entries
            advances.setdefault(advance, []).append(work.doc.id)
            if message is not None:
                result.messages.append(message)
        if ledger:
            try:
                await self.ledger.insert_many(ledger, ordered=True, session=session)
            except BulkWriteError as exc:  # a slot recorded already: the ledger refuses the batch
                if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise
                raise ClaimLost("a slot of the batch is recorded already") from exc
        matched = 0
        for advance, ids in advances.items():
            written = await self.schedules.update_many(
                {"_id": {"$in": ids}, "next_slot": advance[0]}, advance_update(advance), session=session
            )
            matched += written.matched_count
        if matched != len(works):
            raise ClaimLost(f"{len(works) - matched} schedules changed meanwhile")
        if tracing.enabled():  # each slot's run starts a trace of its own
            result.traceparents = [_slot_trace(m) for m in result.messages]
        result.outbox_id = await self.db.outbox.add(
            session, result.messages, now=wall, traceparents=result.traceparents or None
        )
        return result


def _slot_trace(message: Envelope) -> str | None:
    if not isinstance(message, RunRequested):
        return None
    data = message.data
    return tracing.root_traceparent(
        "schedule slot", **{"connect.run_id": data.run_id, "connect.job_id": str(data.job.job_id)}
    )


# What one fire writes to a schedule, the same for every schedule advanced alike:
# (cursor read, next slot, its fire time, display next run, previous run, a run requested).
Advance = tuple[datetime | None, datetime | None, datetime | None, datetime | None, datetime | None, bool]


def advance_update(advance: Advance) -> list[Doc]:
    """The update (a one-stage pipeline) that advances schedules past a fire.

    A run requested takes the next run number of the document itself (`last_run` + 1, run id
    "owner.number", what `next_run_id` gives): the same for all, so one statement for all.
    """
    _, next_slot, next_due, next_run, previous_run, requested = advance
    changes: Doc = {
        "next_slot": next_slot,
        "due": epoch_seconds(next_due),
        "next_run": next_run,
        "previous_run": {"$literal": previous_run},
    }
    if requested:
        number = {"$add": [{"$ifNull": ["$last_run", 0]}, 1]}
        changes |= {
            "running": {"$concat": [{"$toString": "$owner_id"}, ".", {"$toString": number}]},
            "last_run": number,
        }
    return [{"$set": changes}]


def _fire_job(
    work: Work, now: datetime, wall: datetime, result: FireResult
) -> tuple[list[Doc], Advance, RunRequested | None]:
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
            message = scheduled_run_requested(snapshot, rid, now, slot=slot, fire_at=plan.fire_time(slot))
            run_id, running, last_run, previous = str(rid), str(rid), rid.number, slot
        entries.append(_entry(doc.id, slot, outcome, wall, run_id))
        result.outcomes.append((doc.id, slot, outcome))
    if message is not None and (last_run, running) != (
        doc.last_run + 1,
        f"{doc.owner_id}.{doc.last_run + 1}",
    ):
        raise AssertionError(f"{doc.id}: one run requested per pass, numbered after the document's")
    next_run = display_next_run(doc.schedule, plan.next_due, doc.active)
    advance: Advance = (
        doc.next_slot, plan.next_slot, plan.next_due, next_run, previous, message is not None
    )  # fmt: skip
    return entries, advance, message


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
