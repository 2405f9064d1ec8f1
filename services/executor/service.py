"""Executor use cases: claim a requested run, execute it once, report it exactly once.

RabbitMQ's consumer timeout: the delivery of `RunRequested` is acknowledged as soon as the claim (a
lease in MongoDB) is durable — before the run has a slot. A claimed run waits for one of this
executor's `concurrency` slots inside the executor, its lease renewed (heartbeat every third of the
lease) like a running one; an executor with a free slot takes waiting runs over from a busy one
(`steal_waiting`). If the executor dies, the lease expires and the reaper of any executor takes the run
over; SIGTERM hands waiting runs over at once. A redelivered or duplicate `RunRequested` finds the lease
held or finished and does nothing. So neither a long run nor a long wait holds an unacknowledged
delivery, and the consumer timeout never applies. The attempt count rises only when a run gets a slot
(`LeaseStore.start`, or `claim_and_start` when a slot is free at once: claim and attempt in one write);
a take-over resumes an import after its last checkpoint (stored with the lease) and keeps the first
attempt's start time.

Losing the broker is not a run's failure: events go through `EventBuffer`, which holds them (bounded,
in order) until the broker is back, while the run goes on and its lease (MongoDB) is renewed.

Imports into one table take turns: before its first write a run holds the table's writer lock, a field
of its lease (`table_writers.py`), waiting while another run holds it; the claim that starts the attempt
takes it when the table is free (no write of its own), the lease's heartbeat renews it and the write that
stores the result ends it, so the end state of concurrent runs is that of some serial order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from functools import partial

from services.executor.active import (
    LEASE_LOST,
    STOP_REQUESTED,
    TABLE_LOST,
    TABLE_LOST_MESSAGE,
    TIMED_OUT,
    ActiveRun,
    ExecutionSettings,
    LocalWriters,
    wait_for_slot,
)
from services.executor.audience import MongoAudienceStore
from services.executor.errors import RunStopped
from services.executor.event_buffer import EventBuffer
from services.executor.exporters.run import ExportRun
from services.executor.importers.context import ImportContext
from services.executor.importers.pipeline import Checkpoint
from services.executor.importers.run import ImportRun
from services.executor.ports import (
    CatalogReader,
    Claim,
    EventPublisher,
    LeaseStore,
    RunWork,
    TableWriters,
    WorkOutcome,
)
from services.executor.reporting import ReportedMarks, RunReporter
from services.executor.repository import MongoRejectStore, MongoWatermarks
from services.executor.work import Attempt, RefusedWork, WorkFactory
from shared.catalog_records import table_collection
from shared.contracts import ExportSpec, ImportSpec, RunFinished, RunRequested, RunStatus
from shared.contracts.durations import parse_max_duration
from shared.contracts.jobs import SftpSource
from shared.contracts.runs import LogLevel, Trigger
from shared.errors import ConnectError, PermanentError, RetryableError
from shared.logging import current_job_id, current_run_id
from shared.metrics import ExecutorMetrics
from shared.secrets import SecretBox

__all__ = ["ExecutionSettings", "ExecutorService"]  # the settings live in `active`; callers import them here
logger = logging.getLogger(__name__)


class ExecutorService:
    def __init__(
        self,
        settings: ExecutionSettings,
        *,
        leases: LeaseStore,
        writers: TableWriters,
        catalog: CatalogReader,
        store: MongoAudienceStore,
        rejects: MongoRejectStore,
        watermarks: MongoWatermarks,
        publisher: EventPublisher,
        secrets: SecretBox,
        metrics: ExecutorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.leases = leases
        self.writers = writers
        self.catalog = catalog
        self.store = store
        self.rejects = rejects
        self.watermarks = watermarks
        self.publisher = publisher
        self.secrets = secrets
        self.metrics = metrics
        self.events = EventBuffer(publisher)
        # Marks wait up to a tenth of a lease (3 s at most): one write for all the runs published meanwhile.
        # The reaper republishes only results stored more than a lease ago, so it never sees them unmarked.
        self.reported = ReportedMarks(leases.mark_reported, delay=min(3.0, settings.lease_seconds / 10))
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.active: dict[str, ActiveRun] = {}  # claimed here: running or waiting for a slot
        self.writing_here = LocalWriters()
        self.work = WorkFactory()  # a run's work, by its job's kind
        self.work.add(ExportSpec, self._export_work)
        self.work.add(ImportSpec, self._import_work)

    async def accept(self, request: RunRequested) -> bool:
        """Claim a run and queue it for a slot here; False when it is already claimed or finished.

        Returns once the claim is durable, whether or not a slot is free: the delivery is acknowledged
        then, and the run waits inside the executor, never as an unacknowledged message."""
        run_id = request.data.run_id
        if run_id not in self.active:
            if not self.slots.locked():  # a free slot: claimed and started in one write
                return await self._claim_and_start(request)
            if await self.leases.claim(request, self.settings.executor_id):
                self._queue(request)
                return True
        logger.info("run already claimed or finished; ignoring", extra={"run_id": run_id})
        return False

    async def _claim_and_start(self, request: RunRequested) -> bool:
        await self.slots.acquire()  # free: returns at once
        try:
            claim = await self.leases.claim_and_start(
                request, self.settings.executor_id, self._claim_table(request)
            )
        except BaseException:
            self.slots.release()
            raise
        if claim is None:
            self.slots.release()
            logger.info("run already claimed or finished; ignoring", extra={"run_id": request.data.run_id})
            return False
        self._queue(request, claim)
        return True

    def _queue(self, request: RunRequested, claim: Claim | None = None) -> None:
        """Run it here: `claim` when it has a slot already, else it waits for one."""
        started = claim is not None
        active = ActiveRun(request, claim=claim, started=started, has_slot=started)
        if claim is not None:
            self._took_table(active, claim)
        self.active[request.data.run_id] = active
        active.task = asyncio.create_task(self._run(active), name=f"run-{request.data.run_id}")

    def request_stop(self, run_id: str) -> bool:
        active = self.active.get(run_id)
        if active is None:
            return False
        active.halt(STOP_REQUESTED)
        return True

    async def take_over_expired(self) -> int:
        """With free slots: claim runs whose executor stopped renewing its lease (crashed), then runs
        that a busy executor holds waiting for a slot; re-publish stored but unreported results."""
        taken = 0
        if (free := self.settings.concurrency - len(self.active)) > 0:
            for request in await self.leases.expired(limit=free):
                taken += await self.accept(request)
        if (free := self.settings.concurrency - len(self.active)) > 0:
            for request in await self.leases.steal_waiting(self.settings.executor_id, limit=free):
                if request.data.run_id in self.active:  # ours still (stolen back and forth): one copy
                    continue
                logger.info(
                    "taking over a run waiting for a slot elsewhere", extra={"run_id": request.data.run_id}
                )
                self._queue(request)
                taken += 1
        await self._resend_unreported()
        return taken

    async def shutdown(self, grace: float) -> None:
        """Hand waiting runs over at once; let running ones finish within `grace` (the rest are handed
        over too); publish what the event buffer still holds."""
        waiting = [a.task for a in self.active.values() if a.task is not None and not a.started]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        tasks = [a.task for a in self.active.values() if a.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.events.drain(timeout=grace)
        await self.events.close()
        await self.reported.close()

    async def _run(self, active: ActiveRun) -> None:
        """A claimed run: wait for a slot (lease renewed meanwhile), then execute it."""
        run_id = active.request.data.run_id
        current_run_id.set(run_id)
        current_job_id.set(active.request.data.job.job_id)
        heartbeat = asyncio.create_task(self._heartbeat(active, run_id))
        try:
            claim = active.claim or await self._wait_and_start(active)
            if claim is None:
                return
            await self._execute(active, claim)
        except asyncio.CancelledError:
            logger.warning("run interrupted by shutdown; another executor will take it over")
            with contextlib.suppress(Exception):
                await asyncio.shield(self._hand_over(active))
            raise
        except Exception:  # its table writer lock expires with its lease, which the reaper then takes over
            logger.exception("run could not be reported; the reaper will retry")
        finally:
            heartbeat.cancel()
            self.writing_here.let_go(active.tables, run_id)
            if self.active.get(run_id) is active:  # a newer copy of the run may have replaced it
                del self.active[run_id]
            if active.has_slot:
                self.slots.release()

    async def _wait_and_start(self, active: ActiveRun) -> Claim | None:
        """Wait for a slot, then start the attempt; None when the run went elsewhere meanwhile."""
        if self.slots.locked():
            logger.info("all %d slots busy; the run waits for one", self.settings.concurrency)
        if not await wait_for_slot(self.slots, active):
            return None
        run_id, request, sent = active.request.data.run_id, active.request, time.monotonic()
        active.claim = await self.leases.start(run_id, self.settings.executor_id, self._claim_table(request))
        active.lease_extended_at = sent
        if active.claim is None:
            logger.info("run taken over by another executor while it waited for a slot")
        else:
            self._took_table(active, active.claim)
        return active.claim

    async def _execute(self, active: ActiveRun, claim: Claim) -> None:
        request = active.request
        if self.metrics:
            self.metrics.runs_in_progress.inc()
        try:
            finished = await self._attempts(active, claim)
            assert active.reporter is not None  # made by the first attempt
            reported = await self._report(finished, active.reporter)  # its write ends the table lock too
            self.writing_here.let_go(active.tables, claim.run_id)
            active.tables.clear()
            if reported:
                self._count_finished(request, finished)
        finally:
            if self.metrics:
                self.metrics.runs_in_progress.dec()

    async def _hand_over(self, active: ActiveRun) -> None:
        run_id, owner, reporter = active.request.data.run_id, self.settings.executor_id, active.reporter
        if reporter is not None:
            await reporter.pause_log()  # the release records the numbers; a take-over may follow at once
        held = await self.leases.release(run_id, owner, reporter.last_seq if reporter else 0)
        if reporter is not None:
            await reporter.close_log(recorded=held)  # the lines held still go out within the grace
        # The table writer lock is on the lease: it expired with it, keeping the run (its take-over continues).

    async def _hold_table(self, active: ActiveRun, reporter: RunReporter, collection: str, name: str) -> bool:
        """Wait until the run may write `collection`; True when it held it already (its checkpoint holds)."""
        if collection in active.tables:  # taken with the claim, or by an earlier attempt of it
            continued, active.table_continued = active.table_continued, True
            return continued
        try:
            return await self._wait_for_table(active, reporter, collection, name)
        except BaseException:
            if collection not in active.tables:  # its reservation here: the next run here may ask
                self.writing_here.let_go({collection}, reporter.run_id)
            raise

    async def _wait_for_table(
        self, active: ActiveRun, reporter: RunReporter, collection: str, name: str
    ) -> bool:
        run_id, owner = reporter.run_id, self.settings.executor_id
        delay, waiting_since = 0.05, None
        while True:
            if (here := self.writing_here.other_holder(collection, run_id)) is not None:
                holder, freed = here  # a run of this executor holds or asks for it: wait for it, no poll
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    await reporter.log(
                        f"waiting for run {holder}, which is writing table {name}", table=name, holder=holder
                    )
                await _first_of(freed, active.stop, timeout=self.settings.table_poll_seconds)
                if active.stop.is_set():
                    raise RunStopped
                continue
            self.writing_here.took(collection, run_id)  # reserved here: the other runs here wait behind it
            hold = await self.writers.acquire(collection, run_id, owner)
            if not hold.acquired and hold.holder in self.active and hold.holder != run_id:
                # The database gives the table to another run here (one that stopped an attempt for a loss
                # it then did not have, say): the database decides, so it goes first, never both waiting.
                self.writing_here.let_go({collection}, run_id)
            if hold.acquired:
                active.tables, active.table_continued = {collection}, True
                if waiting_since is not None:
                    waited = time.monotonic() - waiting_since
                    await reporter.log(f"table {name} is free after {waited:.1f}s; proceeding", table=name)
                return hold.continued
            if waiting_since is None and hold.holder is not None:
                waiting_since = time.monotonic()
                await reporter.log(
                    f"waiting for run {hold.holder}, which is writing table {name}",
                    table=name,
                    holder=hold.holder,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(active.stop.wait(), timeout=delay)
            if active.stop.is_set():
                raise RunStopped
            delay = min(delay * 2, self.settings.table_poll_seconds)

    def _claim_table(self, request: RunRequested) -> str | None:
        """What the claim tries to take with it. Nothing when another run here with a slot imports into the
        table: it holds the lock or will ask for it soon, and a claim holding the table from its start
        would make that run wait for the whole of this one (it takes the lock before its first write)."""
        table, run_id = _claim_table(request), request.data.run_id
        if table is None:
            return None
        for other in self.active.values():
            if other.has_slot and other.request.data.run_id != run_id and _target(other.request) == table:
                return None
        return table

    def _took_table(self, active: ActiveRun, claim: Claim) -> None:
        active.took_table(claim)
        if claim.table is not None:
            self.writing_here.took(claim.table, claim.run_id)

    def _count_finished(self, request: RunRequested, finished: RunFinished) -> None:
        if not self.metrics:
            return
        data, job_type = finished.data, request.data.job.job_type.value
        self.metrics.runs_total.labels(job_type, data.status.value, request.data.trigger.value).inc()
        duration = (data.finished_at - data.started_at).total_seconds()
        self.metrics.run_duration_seconds.labels(job_type).observe(max(duration, 0.0))

    async def _attempts(self, active: ActiveRun, claim: Claim) -> RunFinished:
        reporter = active.reporter = self._reporter(active.request, claim)
        await reporter.started()
        await reporter.log(
            f"run {claim.run_id} started on {self.settings.executor_id} (attempt {claim.attempt})",
            trigger=active.request.data.trigger.value,
        )
        deadline = self._deadline(active, claim)
        try:
            return await self._run_attempts(active, claim, reporter)
        finally:
            if deadline is not None:
                deadline.cancel()

    def _deadline(self, active: ActiveRun, claim: Claim) -> asyncio.Task[None] | None:
        """The job's `max_duration`, counted from the run's first start (a take-over keeps it): past it,
        the run is halted, and stops at its next safe point like a stopped one (it is not retried)."""
        limit = active.request.data.job.spec.max_duration
        if limit is None:
            return None
        ends = claim.started_at + parse_max_duration(limit)

        async def expire() -> None:
            await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()))
            logger.warning("run timed out after %s; stopping it at its next safe point", limit)
            active.halt(TIMED_OUT)

        return asyncio.create_task(expire(), name=f"deadline-{claim.run_id}")

    async def _stopped(self, active: ActiveRun, reporter: RunReporter, work: RunWork) -> RunFinished:
        """A halted run's end: failed when its time limit ran out, else stopped."""
        limit = active.request.data.job.spec.max_duration
        if TIMED_OUT in active.halted_for and LEASE_LOST not in active.halted_for and limit is not None:
            message = f"timed out after {limit}"
            await reporter.log(f"failed: {message}", LogLevel.ERROR)
            return reporter.finished(RunStatus.FAILED, work.tally, error=message, timed_out=True)
        await reporter.log(_why_stopped(active), LogLevel.WARNING)
        return reporter.finished(RunStatus.STOPPED, work.tally)

    async def _run_attempts(self, active: ActiveRun, claim: Claim, reporter: RunReporter) -> RunFinished:
        for attempt in range(1, self.settings.max_attempts + 1):
            work = await self.work.build(
                active.request.data.job.spec, Attempt(active, claim, reporter, attempt)
            )
            if active.stop.is_set() and active.halted_for != {TABLE_LOST}:  # while it waited for a slot
                return await self._stopped(active, reporter, work)
            ticker = asyncio.create_task(self._progress_loop(reporter, work))
            failure: RetryableError | None = None
            try:
                outcome = await work.run()
            except RunStopped:
                if active.halted_for != {TABLE_LOST}:
                    return await self._stopped(active, reporter, work)
                self.writing_here.let_go(active.tables, claim.run_id)
                active.resume_after_table_lost()
                failure = RetryableError(TABLE_LOST_MESSAGE)
            except RetryableError as exc:
                failure = exc
            except ConnectError as exc:
                return await self._failed(reporter, work, exc)
            except Exception as exc:
                logger.exception("run failed with an unexpected error")
                # Scrubbed before it is cut: a cut could leave a piece of a secret the scrubber misses.
                text = reporter.redactor.scrub(f"internal error: {exc!r}")
                return await self._failed(reporter, work, PermanentError(text[:500]))
            finally:
                ticker.cancel()
            if failure is None and not await self._kept_the_table(active, claim.run_id):
                self.writing_here.let_go(active.tables, claim.run_id)
                active.resume_after_table_lost()
                failure = RetryableError(TABLE_LOST_MESSAGE)
            if failure is None:
                return await self._succeeded(reporter, work, outcome)
            if attempt == self.settings.max_attempts:
                return await self._failed(reporter, work, failure)
            if not await self._pause(active, reporter, attempt, failure):
                if active.halted_for != {TABLE_LOST}:
                    return await self._stopped(active, reporter, work)
                self.writing_here.let_go(active.tables, claim.run_id)
                active.resume_after_table_lost()  # lost during the backoff: the next attempt waits for it
        raise AssertionError("unreachable: the last attempt returns")

    async def _kept_the_table(self, active: ActiveRun, run_id: str) -> bool:
        """Whether the run still holds its table's writer lock now that its last write is done.

        The heartbeat notices a lost lock only at its next renewal; an executor whose renewals stalled past a
        lease period may meanwhile finish its load while another run took the table and wrote it too. Taking
        the lock clears the former holder's, so a lock still held after the last write means nobody else
        wrote in between; one lost means the run loads again, after the other. The lock expires a lease
        period after the lease was last extended: within half of it nobody can have taken it, and no
        renewal is needed (a short run costs no operation more)."""
        since_extended = time.monotonic() - active.lease_extended_at
        if not active.tables or since_extended < self.settings.lease_seconds / 2:
            return True
        held = set(active.tables)
        renewal = await self.leases.renew(run_id, self.settings.executor_id)
        if not renewal.held:
            return True  # the lease is lost: storing the result fails and drops this copy's result
        if renewal.writing in held:
            return True
        logger.error("table writer lock lost before the run ended; the next attempt loads again")
        return False

    async def _pause(self, active: ActiveRun, reporter: RunReporter, attempt: int, exc: ConnectError) -> bool:
        """The backoff before the next attempt; False when a stop came meanwhile."""
        delay = self.settings.retry_backoff * 2 ** (attempt - 1)
        await reporter.log(
            f"attempt {attempt} failed, retrying in {delay:g}s: {exc.message}", LogLevel.WARNING
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(active.stop.wait(), timeout=delay)
        return not active.stop.is_set()

    async def _succeeded(self, reporter: RunReporter, work: RunWork, outcome: WorkOutcome) -> RunFinished:
        tally, ending = outcome.tally, outcome.ending()
        await reporter.progress(tally, work.bytes_total, force=True)
        if self.metrics:
            kind = reporter.request.data.job.spec.kind
            for counted, count in outcome.records_processed().items():
                self.metrics.records_processed_total.labels(kind, counted).inc(count)
        would = "would be " if _is_dry(reporter.request) else ""
        await reporter.log(
            f"finished: {ending.status.value}; read {tally.read}, {would}inserted {tally.inserted}, "
            f"{would}updated {tally.updated}, {would}rejected {tally.rejected}"
        )
        return reporter.finished(ending.status, tally, rejects_file=ending.rejects_file, error=ending.error,
                                 first_rejects=ending.first_rejects)  # fmt: skip

    async def _failed(self, reporter: RunReporter, work: RunWork, exc: ConnectError) -> RunFinished:
        await reporter.log(f"failed: {exc.message}", LogLevel.ERROR)
        return reporter.finished(RunStatus.FAILED, work.tally, error=exc.message)

    async def _progress_loop(self, reporter: RunReporter, work: RunWork) -> None:
        """`RunProgress` every interval, however long a single read or write takes."""
        while True:
            await asyncio.sleep(self.settings.progress_interval)
            with contextlib.suppress(Exception):
                await reporter.progress(work.tally, work.bytes_total, force=True)

    async def _store_result(self, run_id: str, message: str) -> bool:
        """A short database blip here must not make the reaper run a finished run again: retry a little."""
        for delay in (0.5, 1.0, 2.0):
            try:
                return await self.leases.finish(run_id, self.settings.executor_id, message)
            except RetryableError as exc:
                logger.warning("storing the run's result failed; trying again in %gs: %s", delay, exc.message)
                await asyncio.sleep(delay)
        return await self.leases.finish(run_id, self.settings.executor_id, message)

    async def _report(self, finished: RunFinished, reporter: RunReporter) -> bool:
        # Stored before it is published: a crash in between is repaired by `_resend_unreported`.
        # A copy that lost its lease (another executor took the run over) reports nothing: the run
        # ends with the owner's one `RunFinished`, and its unsent log lines are dropped.
        # The stored result ends the numbering: the lines still held go out, then the result, which is
        # marked reported once it is out.
        run_id = finished.data.run_id
        await reporter.pause_log()
        stored = await self._store_result(run_id, finished.model_dump_json())
        await reporter.close_log(recorded=stored)
        if not stored:
            logger.warning("lease held by another executor; this copy's result is dropped")
            return False
        await self.events.publish(finished, on_published=partial(self.reported.add, run_id))
        logger.info("run finished", extra={"status": finished.data.status.value})
        return True

    async def _resend_unreported(self) -> None:
        """Results stored by an executor that died before publishing them (not those still buffered here)."""
        for message in await self.leases.unreported(older_than_seconds=self.settings.lease_seconds):
            finished = RunFinished.model_validate_json(message)
            if self.events.holds(finished.id) or self.reported.holds(finished.data.run_id):
                continue
            await self.events.publish(finished, on_published=partial(self.reported.add, finished.data.run_id))

    async def _heartbeat(self, active: ActiveRun, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                # What the run held when the renewal was sent: a table it takes while the renewal is on its
                # way is not on the lease the renewal read, and is not lost.
                held, sent = set(active.tables), time.monotonic()
                renewal = await self.leases.renew(run_id, self.settings.executor_id)
                renewed = renewal.held
                if renewed and held and held <= active.tables and renewal.writing not in held:
                    logger.error(
                        "table writer lock lost; this attempt stops and the next one waits for the table"
                    )
                    active.halt(TABLE_LOST)
                elif renewed:
                    active.lease_extended_at = sent
            except Exception:
                logger.warning("lease renewal failed; trying again", exc_info=True)
                continue
            if not renewed:
                logger.error("lease lost; stopping this copy of the run")
                active.halt(LEASE_LOST)
                return

    def _reporter(self, request: RunRequested, claim: Claim) -> RunReporter:
        return RunReporter(
            request,
            executor_id=self.settings.executor_id,
            attempt=claim.attempt,
            publisher=self.events,
            leases=self.leases,
            progress_interval=self.settings.progress_interval,
            started_at=claim.started_at,
            log_seq=claim.log_seq,
            log_flush_seconds=self.settings.log_flush_seconds,
        )

    async def _export_work(self, spec: ExportSpec, attempt: Attempt) -> RunWork:
        active = attempt.active
        if _is_dry(active.request):  # the catalog refuses it; a message from elsewhere fails here
            return RefusedWork("dry run is for import jobs")
        return ExportRun(
            spec, attempt.reporter, job_id=active.request.data.job.job_id, catalog=self.catalog,
            store=self.store, watermarks=self.watermarks, secrets=self.secrets, settings=self.settings.exports,
            stop_requested=active.stop.is_set, on_bytes=self._count_bytes,
        )  # fmt: skip

    async def _import_work(self, spec: ImportSpec, attempt: Attempt) -> RunWork:
        active, claim, reporter = attempt.active, attempt.claim, attempt.reporter
        run_id, owner = claim.run_id, self.settings.executor_id

        async def save(checkpoint: Checkpoint) -> None:
            await self.leases.save_checkpoint(run_id, owner, checkpoint.to_doc())

        async def hold_table(collection: str, name: str) -> bool:
            return await self._hold_table(active, reporter, collection, name)

        if _is_dry(active.request):
            # Writes nothing, so it takes no table writer lock (a real run never waits for it), saves no
            # checkpoint (a take-over reads the file again: its planned rows were in memory) and counts
            # no processed records; its rejects are kept, for `GET /runs/{id}/rejects` and its result.
            return ImportRun(
                spec, reporter, catalog=self.catalog, store=self.store, rejects=self.rejects.counting(run_id),
                secrets=self.secrets, settings=self.settings.imports, stop_requested=active.stop.is_set,
                context=ImportContext(run_id=run_id, tag=f"{run_id}#{claim.attempt}.{attempt.number}",
                                      on_bytes=self._count_bytes, dry_run=True),
            )  # fmt: skip
        # The claim read the checkpoint; a later attempt of this claim may have saved a newer one.
        stored = claim.checkpoint if attempt.number == 1 else await self.leases.load_checkpoint(run_id)
        context = ImportContext(
            run_id=run_id,
            tag=f"{run_id}#{claim.attempt}.{attempt.number}",
            resume=Checkpoint.from_doc(stored),
            checkpoint_doc=stored,
            save_checkpoint=save,
            hold_table=hold_table,
            on_bytes=self._count_bytes,
            on_records=self._count_records,
        )
        if active.rejects is None:  # one per claim: its attempts' saves add up to the run's count
            active.rejects = self.rejects.counting(run_id) if claim.attempt == 1 else self.rejects
        return ImportRun(
            spec, reporter, catalog=self.catalog, store=self.store, rejects=active.rejects, secrets=self.secrets,
            settings=self.settings.imports, stop_requested=active.stop.is_set, context=context,
        )  # fmt: skip

    def _count_bytes(self, direction: str, count: int) -> None:
        if self.metrics:
            self.metrics.sftp_bytes_total.labels(direction).inc(count)

    def _count_records(self, outcome: str, count: int) -> None:
        if self.metrics and count:
            self.metrics.records_processed_total.labels("import", outcome).inc(count)


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _is_dry(request: RunRequested) -> bool:
    return request.data.trigger == Trigger.DRY_RUN


def _target(request: RunRequested) -> str | None:
    spec = request.data.job.spec
    return table_collection(spec.target.table) if isinstance(spec, ImportSpec) else None


def _claim_table(request: RunRequested) -> str | None:
    """The collection whose writer lock the claim takes with it: an import's table, unless the run first
    waits for a ready file or a late file (it takes the lock before its first write then, not for the whole wait)."""
    spec = request.data.job.spec
    if (
        _is_dry(request)  # writes nothing: holds no table
        or not isinstance(spec, ImportSpec)
        or not isinstance(spec.source, SftpSource)
        or spec.source.ready_file == "wait"
        or spec.source.if_missing == "wait"
    ):
        return None
    return table_collection(spec.target.table)


def _why_stopped(active: ActiveRun) -> str:
    if LEASE_LOST in active.halted_for:  # its result is dropped: the new owner reports the run
        return "another executor took this run over; this copy stops"
    return "stopped on request"
