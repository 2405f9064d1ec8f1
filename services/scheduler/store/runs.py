"""Run now, trigger fires and run completion, each in one transaction with its outbox entry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.scheduler.domain import Outcome, decide, ledger_key, owner_key, scheduled_run_requested
from services.scheduler.domain.runs import next_run_id
from services.scheduler.errors import CommandExpired, JobAlreadyRunning, JobExpired
from services.scheduler.store.base import SchedulerDb
from services.scheduler.store.documents import Doc, ScheduleDoc, new_schedule_doc
from services.scheduler.store.fires import FireResult, ledger_entry
from services.scheduler.store.groups import GroupStore
from shared import tracing
from shared.contracts import Envelope, JobSnapshot, RunRequested
from shared.contracts.jobs import is_expired
from shared.contracts.runs import RunStatus, Trigger
from shared.errors import Conflict, RetryableError
from shared.outbox import new_document
from shared.runid import RunId

Build = Callable[[RunId], RunRequested]
MAX_KNOWN_COUNTERS = 100_000
Allocated = tuple[RunRequested, str]


@dataclass(frozen=True)
class RunRequest:
    """One run-now command as the store allocates it (see `RunStore.allocate_runs`)."""

    request_id: str
    job_id: int
    build: Build
    now: datetime
    expires_at: datetime | None = None
    still_wanted: Callable[[], bool] = field(default=lambda: True)
    traceparent: str | None = None  # the command's trace context (allocated in a batch, in another task)


class RunStore:
    """Runs born outside the schedule's slots: run now, trigger events; and runs ending."""

    def __init__(self, db: SchedulerDb, groups: GroupStore) -> None:
        self.db = db
        self.groups = groups
        self.schedules = db.schedules
        self.ledger = db.ledger
        self.outbox = db.outbox
        self.partitions = db.partitions
        # job id -> its run counter after the last run this replica allocated: a guess, checked by the
        # guarded write that uses it (`_take_known`), so a stale one costs a read, never a wrong run id.
        self._last_runs: dict[int, int] = {}

    async def allocate_run(
        self, *, request_id: str, job_id: int, build: Build, now: datetime, wall: datetime,
        expires_at: datetime | None = None, still_wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[RunRequested, str]:  # fmt: skip
        """Run now: refuse overlap and expired jobs, allocate `JobID.RunID`, store the outbox entry.

        The same command delivered again gets the same answer. The schedule is not touched. Checked
        last before the commit, `still_wanted()` false (the caller gave up while a conflicting
        transaction held us) aborts it: CommandExpired. The job's document is read only when this replica
        does not know its run counter or the guarded write of `_take_known` finds it changed.
        """

        async def work(session: AsyncClientSession) -> tuple[RunRequested, str]:
            take = (session, job_id, build, now, expires_at, still_wanted)
            message = await self._take_known(*take)
            if message is None:
                message = await self._take_read(*take)
            # `request_id` is unique: the same command delivered again collides here (and is answered below).
            entry = await self.outbox.add(session, [message], now=wall, request_id=request_id)
            assert entry is not None
            return message, entry

        for _ in range(3):  # two first runs of a job new to the scheduler race to create its document
            try:
                return await self.db.transaction(work)
            except (DuplicateKeyError, JobAlreadyRunning, JobExpired) as refused:
                # A redelivered command gets the answer it got the first time, even though its job
                # now runs that very run; looked up only when refused, not on every allocation.
                earlier = await self._allocated(request_id)
                if earlier is not None:
                    return earlier
                if not isinstance(refused, DuplicateKeyError):
                    raise
        raise RetryableError(f"could not allocate a run of job {job_id}")

    async def allocate_runs(
        self, requests: Sequence[RunRequest], wall: datetime
    ) -> list[Allocated | Conflict]:
        """Run now for several commands in ONE transaction: one read of their jobs (none when this replica
        knows every job's run counter: `_known_docs`, each write guarded), one bulk write of the takes, one insert of their outbox entries (one entry per command: its `request_id` stays unique),
        one commit. Per command, in order, the same checks as `allocate_run` (overlap, expiry, the
        caller's deadline last before the commit); a refusal refuses that command only. Returns, per
        request, (message, outbox entry id) or the refusal (Conflict, CommandExpired).

        A collision (a redelivered command's `request_id`, or two replicas creating a job's document)
        aborts the batch, which is then allocated command by command (`allocate_run` answers those).
        """
        if len(requests) == 1:
            return [await self._one(requests[0], wall)]

        async def work(session: AsyncClientSession, guess: bool) -> list[Allocated | Conflict]:
            keys = [owner_key("job", r.job_id) for r in requests]
            known = self._known_docs(requests) if guess else None
            found = known if known is not None else {
                d["_id"]: d
                async for d in self.schedules.find({"_id": {"$in": sorted(set(keys))}}, session=session)
            }  # fmt: skip
            results: list[Allocated | Conflict] = []
            taken: set[str] = set()
            writes: list[InsertOne[Doc] | UpdateOne] = []
            entries: list[Doc] = []
            for request, key in zip(requests, keys, strict=True):
                raw = found.get(key)
                doc = ScheduleDoc(
                    raw or {"_id": key, **new_schedule_doc("job", request.job_id, self.partitions)}
                )
                if key in taken or doc.running:
                    running = doc.running if key not in taken else "allocated in this batch"
                    results.append(JobAlreadyRunning(f"job {request.job_id} is running (run {running})"))
                    continue
                if is_expired(request.expires_at or doc.expires_at, request.now):
                    results.append(JobExpired(f"job {request.job_id} has expired"))
                    continue
                message = request.build(next_run_id(request.job_id, doc.last_run))
                if not request.still_wanted():
                    results.append(
                        CommandExpired(f"the request to run job {request.job_id} passed its deadline")
                    )
                    continue
                taken.add(key)
                if known is not None:  # guarded on what was assumed of the document
                    writes.append(self._guarded(request.job_id, doc.last_run, message, request))
                else:
                    writes.append(self._take_write(doc, raw is None, message))
                self._remember(request.job_id, doc.last_run + 1)
                entry = new_document(
                    [message], wall, request_id=request.request_id, traceparents=[request.traceparent]
                )
                entries.append(entry)
                results.append((message, str(entry["_id"])))
            if writes:
                try:
                    done = await self.schedules.bulk_write(writes, ordered=True, session=session)
                    if known is not None and done.matched_count != len(writes):
                        raise _StaleGuess  # aborts: decided again on the documents, below
                    await self.outbox.add_documents(session, entries)
                except BulkWriteError as exc:
                    if not _duplicates_only(exc):
                        raise
                    raise DuplicateKeyError(str(exc)) from exc  # aborts; allocated one by one below
            return results

        try:
            try:
                results = await self.db.transaction(partial(work, guess=True))
            except _StaleGuess:  # a job ran elsewhere, runs or expired: the read decides, as without guesses
                results = await self.db.transaction(partial(work, guess=False))
        except DuplicateKeyError:
            return [await self._one(r, wall) for r in requests]
        for i, (request, result) in enumerate(zip(requests, results, strict=True)):
            if isinstance(result, JobAlreadyRunning | JobExpired):
                # A redelivered command gets the answer it got the first time (looked up only when refused).
                results[i] = await self._allocated(request.request_id) or result
        return results

    async def _one(self, request: RunRequest, wall: datetime) -> Allocated | Conflict:
        try:
            with tracing.restored(request.traceparent):  # its outbox entry in the command's trace
                return await self.allocate_run(
                    request_id=request.request_id, job_id=request.job_id, build=request.build, now=request.now,
                    wall=wall, expires_at=request.expires_at, still_wanted=request.still_wanted,
                )  # fmt: skip
        except Conflict as refused:
            return refused

    async def _take_known(
        self, session: AsyncClientSession, job_id: int, build: Build, now: datetime,
        expires_at: datetime | None, still_wanted: Callable[[], bool],
    ) -> RunRequested | None:  # fmt: skip
        """Take a job whose run counter this replica knows (it allocated the job's last run) without
        reading its document: one write guarded on everything the read would have checked (not running,
        the counter unchanged, not expired). None when the counter is unknown or the guard does not hold
        (another replica or a scheduled fire ran the job since, it runs, it expired): then the caller reads
        the document and decides as before, in the same transaction."""
        known = self._last_runs.get(job_id)
        if known is None or (expires_at is not None and is_expired(expires_at, now)):
            return None
        message = build(next_run_id(job_id, known))
        result = await self.schedules.update_one(
            self._guard(job_id, known, expires_at, now),
            {"$set": self._take_changes(message.data.run_id, holds=holds_job(message))},
            session=session,
        )
        if result.matched_count != 1:
            self._last_runs.pop(job_id, None)
            return None
        if not still_wanted():  # checked last, as on the read path: raising aborts the write with the rest
            raise CommandExpired(f"the request to run job {job_id} passed its deadline")
        self._remember(job_id, known + 1)
        return message

    async def _take_read(
        self, session: AsyncClientSession, job_id: int, build: Build, now: datetime,
        expires_at: datetime | None, still_wanted: Callable[[], bool],
    ) -> RunRequested:  # fmt: skip
        """Take the job after reading its document: refused while it runs or once it expired."""
        key = owner_key("job", job_id)
        raw = await self.schedules.find_one({"_id": key}, session=session)
        doc = ScheduleDoc(raw or {"_id": key, **new_schedule_doc("job", job_id, self.partitions)})
        if doc.running:
            raise JobAlreadyRunning(f"job {job_id} is running (run {doc.running})")
        if is_expired(expires_at or doc.expires_at, now):
            raise JobExpired(f"job {job_id} has expired")
        message = build(next_run_id(job_id, doc.last_run))
        if not still_wanted():
            raise CommandExpired(f"the request to run job {job_id} passed its deadline")
        await self._take(session, doc, raw is None, message.data.run_id, holds=holds_job(message))
        self._remember(job_id, doc.last_run + 1)
        return message

    def _known_docs(self, requests: Sequence[RunRequest]) -> dict[str, Doc] | None:
        """The documents a batch would read, as this replica expects them (free, its counter, no expiry
        of their own), when it knows every job's counter: each write then guards on what was assumed."""
        docs: dict[str, Doc] = {}
        for request in requests:
            if (known := self._last_runs.get(request.job_id)) is None:
                return None
            key = owner_key("job", request.job_id)
            docs[key] = {"_id": key, "running": None, "last_run": known, "expires_at": None}
        return docs

    def _guarded(self, job_id: int, last_run: int, message: RunRequested, request: RunRequest) -> UpdateOne:
        return UpdateOne(
            self._guard(job_id, last_run, request.expires_at, request.now),
            {"$set": self._take_changes(message.data.run_id, holds=holds_job(message))},
        )

    @staticmethod
    def _guard(job_id: int, last_run: int, expires_at: datetime | None, now: datetime) -> Doc:
        """The job free, its counter at `last_run`, and (unless the command's own instant decides) not expired."""
        guard: Doc = {"_id": owner_key("job", job_id), "running": None, "last_run": last_run}
        if expires_at is None:
            guard["$or"] = [{"expires_at": None}, {"expires_at": {"$gt": now}}]
        return guard

    def _remember(self, job_id: int, last_run: int) -> None:
        if len(self._last_runs) >= MAX_KNOWN_COUNTERS and job_id not in self._last_runs:
            del self._last_runs[next(iter(self._last_runs))]  # the oldest: it is read again when next run
        self._last_runs[job_id] = last_run

    def _take_write(self, doc: ScheduleDoc, new: bool, message: RunRequested) -> InsertOne[Doc] | UpdateOne:
        changes = self._take_changes(message.data.run_id, holds=holds_job(message))
        if new:
            return InsertOne(doc.raw | changes)
        return UpdateOne({"_id": doc.id}, {"$set": changes})

    @staticmethod
    def _take_changes(run_id: str, *, holds: bool = True) -> Doc:
        # `group_run: False`: this run is no group member, so its end needs no transaction (`run_finished`).
        if not holds:  # a dry run takes its number only: the job stays free for its real runs
            return {"last_run": RunId.parse(run_id).number}
        return {"running": run_id, "last_run": RunId.parse(run_id).number, "group_run": False}

    async def _allocated(self, request_id: str) -> tuple[RunRequested, str] | None:
        earlier = await self.outbox.find_request(request_id)
        if earlier is None:
            return None
        message = earlier.messages[0]
        assert isinstance(message, RunRequested)
        return message, earlier.id

    async def _take(
        self, session: AsyncClientSession, doc: ScheduleDoc, new: bool, run_id: str, *, holds: bool = True
    ) -> None:
        changes = self._take_changes(run_id, holds=holds)
        if new:
            await self.schedules.insert_one(doc.raw | changes, session=session)
        else:
            await self.schedules.update_one({"_id": doc.id}, {"$set": changes}, session=session)

    async def run_finished(
        self, job_id: int, run_id: str, status: RunStatus, now: datetime, wall: datetime
    ) -> FireResult:
        """Free the job; if the run was a group member, advance its group run (same transaction).

        A run taken by run now or a trigger (`group_run: False` on its job) is freed by one guarded
        single-document update, no transaction: nothing else changes with it. Any other run (a group
        member, a scheduled slot's, a document of an earlier release, a redelivered RunFinished) takes
        the transaction, which also advances the group run if the run was a member.
        """
        key = owner_key("job", job_id)
        freed = await self.schedules.update_one(
            {"_id": key, "running": run_id, "group_run": False}, {"$set": {"running": None}}
        )
        if freed.modified_count:
            return FireResult()

        async def work(session: AsyncClientSession) -> FireResult:
            await self.schedules.update_one(
                {"_id": key, "running": run_id}, {"$set": {"running": None, "group_run": False}},
                session=session,
            )  # fmt: skip
            messages = await self.groups.advance_group(session, run_id, status, now)
            return await self._with_outbox(session, messages, wall)

        return await self.db.transaction(work)

    async def trigger_owners(self, name: str) -> list[ScheduleDoc]:
        docs = await self.schedules.find({"trigger": name, "deleted": False}).to_list(None)
        return [ScheduleDoc(d) for d in docs]

    async def fire_trigger(
        self, key: str, slot: str, params: dict[str, str], now: datetime, wall: datetime
    ) -> FireResult:
        """One owner's fire for one trigger event (at most once per idempotency key, by the ledger)."""

        async def work(session: AsyncClientSession) -> FireResult:
            result = FireResult()
            if await self.ledger.find_one({"_id": ledger_key(key, slot)}, {"_id": 1}, session=session):
                return result  # this event already fired this owner
            raw = await self.schedules.find_one({"_id": key}, session=session)
            if raw is None:
                return result
            doc = ScheduleDoc(raw)
            outcome = decide(now, active=doc.active, expires_at=doc.expires_at, running=bool(doc.running))
            messages: list[Envelope] = []
            run_id = None
            if outcome is Outcome.REQUESTED:
                run_id, messages = await self._start(session, doc, Trigger.EVENT, params, now)
                outcome = Outcome.REQUESTED if run_id else Outcome.INACTIVE
            await self.ledger.insert_one(ledger_entry(key, slot, outcome, wall, run_id), session=session)
            result = await self._with_outbox(session, messages, wall)
            result.outcomes.append((key, now, outcome))
            return result

        return await self.db.transaction(work)

    async def _start(
        self, session: AsyncClientSession, doc: ScheduleDoc, trigger: Trigger, params: dict[str, str],
        now: datetime, slot: datetime | None = None,
    ) -> tuple[str | None, list[Envelope]]:  # fmt: skip
        """Start a job run or a group run for a schedule document (already checked: free, active)."""
        if doc.kind == "group":
            return await self.groups.start_group_run(
                session, doc, trigger=trigger, requested_by=_by(trigger), now=now, slot=slot, params=params
            )
        snapshot = doc.snapshot
        if snapshot is None:
            return None, []
        rid = next_run_id(doc.owner_id, doc.last_run)
        message = _job_run(snapshot, rid, now, trigger, slot, params)
        await self._take(session, doc, False, str(rid))
        return str(rid), [message]

    async def _with_outbox(
        self, session: AsyncClientSession, messages: list[Envelope], wall: datetime
    ) -> FireResult:
        return FireResult(messages=messages, outbox_id=await self.outbox.add(session, messages, now=wall))

    async def ledger_entries(self, owner: str | None = None) -> list[Doc]:
        query: dict[str, Any] = {} if owner is None else {"owner": owner}
        return await self.ledger.find(query).to_list(None)


class _StaleGuess(Exception):
    """A batch allocated on known run counters found a document other than expected (see `_known_docs`)."""


def _duplicates_only(exc: BulkWriteError) -> bool:
    errors = exc.details.get("writeErrors") or []
    return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)


DUPLICATE_KEY = 11000


def holds_job(message: RunRequested) -> bool:
    """Whether the run holds its job while it runs (a scheduled slot or Run now then waits or skips).

    A dry run does not: it writes nothing, so a real run beside it changes nothing it does, and the job's
    schedule goes on as if it had not been asked for."""
    return message.data.trigger != Trigger.DRY_RUN


def _by(trigger: Trigger) -> str:
    return {Trigger.SCHEDULED: "scheduler", Trigger.EVENT: "trigger"}.get(trigger, "scheduler")


def _job_run(
    snapshot: JobSnapshot, rid: RunId, now: datetime, trigger: Trigger, slot: datetime | None,
    params: dict[str, str],
) -> RunRequested:  # fmt: skip
    return scheduled_run_requested(snapshot, rid, now, slot=slot, trigger=trigger, params=params)
