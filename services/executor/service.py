"""Executor use cases: claim a requested run, execute it once, report it exactly once.

Long runs and RabbitMQ's consumer timeout: the delivery of `RunRequested` is acknowledged as soon as
the claim (a lease in MongoDB) is durable, and the run continues in a task that renews the lease.
If the executor dies, the lease expires and the reaper of any executor takes the run over; a
redelivered or duplicate `RunRequested` finds the lease held or finished and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from services.executor.errors import RunStopped
from services.executor.importer import ImportRun, ImportSettings
from services.executor.ports import CatalogReader, Claim, EventPublisher, LeaseStore, TableWriter
from services.executor.reporting import RunReporter
from shared.contracts import ImportSpec, RunFinished, RunRequested, RunStatus
from shared.contracts.runs import LogLevel
from shared.errors import ConnectError, PermanentError, RetryableError
from shared.logging import current_job_id, current_run_id
from shared.secrets import SecretBox

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionSettings:
    executor_id: str
    concurrency: int
    lease_seconds: float
    progress_interval: float
    max_attempts: int
    retry_backoff: float
    imports: ImportSettings


@dataclass
class ActiveRun:
    request: RunRequested
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class ExecutorService:
    def __init__(
        self,
        settings: ExecutionSettings,
        *,
        leases: LeaseStore,
        catalog: CatalogReader,
        writer: TableWriter,
        publisher: EventPublisher,
        secrets: SecretBox,
    ) -> None:
        self.settings = settings
        self.leases = leases
        self.catalog = catalog
        self.writer = writer
        self.publisher = publisher
        self.secrets = secrets
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.active: dict[str, ActiveRun] = {}

    async def accept(self, request: RunRequested) -> bool:
        """Claim and start a run; False when it is already claimed or finished (a duplicate)."""
        await self.slots.acquire()
        try:
            claim = await self.leases.claim(request, self.settings.executor_id)
        except BaseException:
            self.slots.release()
            raise
        if claim is None:
            self.slots.release()
            logger.info("run already claimed or finished; ignoring", extra={"run_id": request.data.run_id})
            return False
        active = ActiveRun(request)
        self.active[claim.run_id] = active
        active.task = asyncio.create_task(self._execute(active, claim), name=f"run-{claim.run_id}")
        return True

    def request_stop(self, run_id: str) -> bool:
        active = self.active.get(run_id)
        if active is None:
            return False
        active.stop.set()
        return True

    async def take_over_expired(self) -> int:
        """Claim runs whose executor stopped renewing its lease (crashed), and finish them."""
        taken = 0
        for request in await self.leases.expired(limit=self.settings.concurrency):
            if self.slots.locked():
                break
            taken += await self.accept(request)
        await self._resend_unreported()
        return taken

    async def shutdown(self, grace: float) -> None:
        """Let in-flight runs finish within `grace`; the rest are left to expire and be taken over."""
        tasks = [a.task for a in self.active.values() if a.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)

    async def _execute(self, active: ActiveRun, claim: Claim) -> None:
        request = active.request
        current_run_id.set(claim.run_id)
        current_job_id.set(request.data.job.job_id)
        heartbeat = asyncio.create_task(self._heartbeat(active, claim.run_id))
        try:
            finished = await self._attempts(active, claim)
            await self._report(finished)
        except asyncio.CancelledError:
            logger.warning("run interrupted by shutdown; another executor will take it over")
            raise
        except Exception:
            logger.exception("run could not be reported; the reaper will retry")
        finally:
            heartbeat.cancel()
            self.active.pop(claim.run_id, None)
            self.slots.release()

    async def _attempts(self, active: ActiveRun, claim: Claim) -> RunFinished:
        reporter = self._reporter(active.request, claim)
        await reporter.started()
        await reporter.log(
            f"run {claim.run_id} started on {self.settings.executor_id} (attempt {claim.attempt})",
            trigger=active.request.data.trigger.value,
        )
        for attempt in range(1, self.settings.max_attempts + 1):
            importer = self._importer(active, reporter)
            try:
                outcome = await importer.run()
            except RunStopped:
                await reporter.log("stopped on request", LogLevel.WARNING)
                return reporter.finished(RunStatus.STOPPED, importer.tally)
            except RetryableError as exc:
                if attempt == self.settings.max_attempts:
                    return await self._failed(reporter, importer, exc)
                await reporter.log(f"attempt {attempt} failed, retrying: {exc.message}", LogLevel.WARNING)
                await asyncio.sleep(self.settings.retry_backoff * 2 ** (attempt - 1))
                continue
            except PermanentError as exc:
                return await self._failed(reporter, importer, exc)
            tally = outcome.tally
            await reporter.progress(tally, tally.bytes_read, force=True)
            status = tally.final_status()
            await reporter.log(
                f"finished: {status.value}; read {tally.read}, inserted {tally.inserted}, "
                f"updated {tally.updated}, rejected {tally.rejected}"
            )
            return reporter.finished(status, tally, rejects_file=outcome.rejects_file)
        raise AssertionError("unreachable: the last attempt returns")

    async def _failed(self, reporter: RunReporter, importer: ImportRun, exc: ConnectError) -> RunFinished:
        await reporter.log(f"failed: {exc.message}", LogLevel.ERROR)
        return reporter.finished(RunStatus.FAILED, importer.tally, error=exc.message)

    async def _report(self, finished: RunFinished) -> None:
        # Stored before it is published: a crash in between is repaired by `_resend_unreported`.
        await self.leases.finish(finished.data.run_id, self.settings.executor_id, finished.model_dump_json())
        await self.publisher.publish(finished)
        await self.leases.mark_reported(finished.data.run_id)
        logger.info("run finished", extra={"status": finished.data.status.value})

    async def _resend_unreported(self) -> None:
        for message in await self.leases.unreported(older_than_seconds=self.settings.lease_seconds):
            finished = RunFinished.model_validate_json(message)
            await self.publisher.publish(finished)
            await self.leases.mark_reported(finished.data.run_id)

    async def _heartbeat(self, active: ActiveRun, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            if not await self.leases.renew(run_id, self.settings.executor_id):
                logger.error("lease lost; stopping this copy of the run")
                active.stop.set()
                return

    def _reporter(self, request: RunRequested, claim: Claim) -> RunReporter:
        return RunReporter(
            request,
            executor_id=self.settings.executor_id,
            attempt=claim.attempt,
            publisher=self.publisher,
            leases=self.leases,
            progress_interval=self.settings.progress_interval,
        )

    def _importer(self, active: ActiveRun, reporter: RunReporter) -> ImportRun:
        spec = active.request.data.job.spec
        if not isinstance(spec, ImportSpec):
            raise PermanentError("export jobs are not supported by this executor")
        return ImportRun(
            spec,
            reporter,
            catalog=self.catalog,
            writer=self.writer,
            secrets=self.secrets,
            settings=self.settings.imports,
            stop_requested=active.stop.is_set,
        )
