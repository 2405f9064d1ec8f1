"""Everything a run tells the world: start, numbered log lines, progress, the one final event.

Log lines are numbered in memory, from the number the lease recorded before this attempt. A line is
sent only once the lease records a number at or above it (`record_log_seq`, at most one write per
`log_flush_seconds` while lines wait, or the write that stores the run's result), so a take-over, which
numbers after the recorded number, never repeats one that was sent; a copy that lost its lease sends
none of its unrecorded lines. A run shorter than `log_flush_seconds` pays no write for its log at all.

Last line of defence for secrets: every log line and the final error are scrubbed with the run's
redactor, which the adapters fill with each connection secret they decrypt (`shared.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from services.executor.domain import Tally
from services.executor.ports import EventPublisher, LeaseStore
from shared import redact
from shared.contracts import RunFinished, RunLog, RunProgress, RunRequested, RunStarted, RunStatus
from shared.contracts.runs import (
    LogLevel,
    RejectSample,
    RunFinishedData,
    RunLogData,
    RunProgressData,
    RunStartedData,
    Trigger,
)

SOURCE = "connect/executor"
logger = logging.getLogger(__name__)


class RunReporter:
    def __init__(
        self,
        request: RunRequested,
        *,
        executor_id: str,
        attempt: int,
        publisher: EventPublisher,
        leases: LeaseStore,
        progress_interval: float,
        started_at: datetime | None = None,
        log_seq: int = 0,
        log_flush_seconds: float = 1.0,
    ) -> None:
        self.request = request
        self.run_id = request.data.run_id
        self.executor_id = executor_id
        self.attempt = attempt
        self.publisher = publisher
        self.leases = leases
        self.progress_interval = progress_interval
        self.started_at = started_at or datetime.now(UTC)  # the first attempt's, across take-overs
        self._started_clock = time.monotonic()
        self._last_progress = 0.0
        self.last_seq = log_seq  # the last number handed out (the lease's, at the attempt's start)
        self.log_flush_seconds = log_flush_seconds
        self._unsent: list[RunLog] = []  # numbered, waiting for the lease to record their numbers
        self._flusher: asyncio.Task[None] | None = None
        self._lease_lost = False  # another executor numbers the run's log: this copy's lines are dropped
        # Bound to the run's task (the reporter is made in it): adapters add secrets, logs scrub with it.
        self.redactor = redact.Redactor()
        redact.bind(self.redactor)

    async def started(self) -> None:
        job = self.request.data.job
        await self.publisher.publish(
            RunStarted(
                source=SOURCE,
                subject=self.run_id,
                data=RunStartedData(
                    run_id=self.run_id,
                    job_id=job.job_id,
                    job_name=job.name,
                    job_type=job.job_type,
                    trigger=self.request.data.trigger,
                    executor=self.executor_id,
                    attempt=self.attempt,
                    started_at=self.started_at,
                ),
            )
        )

    async def log(
        self, message: str, level: LogLevel = LogLevel.INFO, **fields: str | int | float | None
    ) -> None:
        self.last_seq += 1
        data = RunLogData(
            run_id=self.run_id,
            seq=self.last_seq,
            level=level,
            message=self.redactor.scrub(message),
            fields={k: self.redactor.scrub(v) if isinstance(v, str) else v for k, v in fields.items()},
            at=datetime.now(UTC),
        )
        if self._lease_lost:
            return
        self._unsent.append(RunLog(source=SOURCE, subject=self.run_id, data=data))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._record_later(), name=f"log-{self.run_id}")

    @property
    def lease_lost(self) -> bool:
        return self._lease_lost

    async def _record_later(self) -> None:
        """Record the numbers handed out so far, then send those lines; again while lines keep coming."""
        while self._unsent:
            await asyncio.sleep(self.log_flush_seconds)
            upto = self.last_seq
            try:
                held = await self.leases.record_log_seq(self.run_id, self.executor_id, upto)
            except Exception:
                logger.warning("log lines held: their numbers could not be recorded yet", exc_info=True)
                continue
            if not held:  # another executor numbers the run's log now: these numbers may be its own
                self._lease_lost = True
                self._unsent.clear()
                break
            await self._send(upto)
        self._flusher = None

    async def pause_log(self) -> None:
        """No more recording of numbers: the caller's next write records them all (the stored result).

        Called before that write: a recording after it would find the lease no longer running, take that
        for a loss and drop the held lines of a run that ended well."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    async def close_log(self, *, recorded: bool) -> None:
        """The lease now records every number handed out (True: send the waiting lines) or is lost (drop them)."""
        await self.pause_log()
        if recorded and not self._lease_lost:
            await self._send(self.last_seq)
        self._lease_lost = self._lease_lost or not recorded
        self._unsent.clear()

    async def _send(self, upto: int) -> None:
        while self._unsent and self._unsent[0].data.seq <= upto:
            await self.publisher.publish(self._unsent[0])  # taken off only once handed over
            del self._unsent[0]

    async def progress(self, tally: Tally, bytes_total: int | None, *, force: bool = False) -> None:
        """Rate over this attempt's own clock (a take-over starts counting again)."""
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_interval:
            return
        self._last_progress = now
        elapsed = max(now - self._started_clock, 1e-6)
        data = RunProgressData(
            run_id=self.run_id,
            records_read=tally.read,
            records_written=tally.written,
            records_rejected=tally.rejected,
            bytes_read=tally.bytes_read,
            bytes_total=bytes_total,
            records_per_second=round(tally.read / elapsed, 1),
            at=datetime.now(UTC),
        )
        await self.publisher.publish(RunProgress(source=SOURCE, subject=self.run_id, data=data))

    def finished(
        self,
        status: RunStatus,
        tally: Tally,
        *,
        error: str | None = None,
        rejects_file: str | None = None,
        timed_out: bool = False,
        first_rejects: tuple[RejectSample, ...] = (),
    ) -> RunFinished:
        return RunFinished(
            id=f"run-finished-{self.run_id}",
            source=SOURCE,
            subject=self.run_id,
            data=RunFinishedData(
                run_id=self.run_id,
                job_id=self.request.data.job.job_id,
                status=status,
                counts=tally.counts(),
                started_at=self.started_at,
                finished_at=datetime.now(UTC),
                error=self.redactor.scrub(error) if error else error,
                rejects_file=rejects_file,
                last_log_seq=self.last_seq,
                timed_out=timed_out,
                dry_run=self.request.data.trigger == Trigger.DRY_RUN,
                notify=self.request.data.job.notifies and self.request.data.trigger != Trigger.DRY_RUN,
                first_rejects=first_rejects,
            ),
        )


class ReportedMarks:
    """Runs whose stored result is out on the broker, marked reported together: one write per `delay`.

    Until it is marked, the reaper of any executor may publish a result again (a repeat of the same
    message id, never a loss); it looks only at results stored longer than a lease ago, far longer than
    `delay`, and this executor's own reaper skips the runs still waiting here."""

    def __init__(self, mark: Callable[[Sequence[str]], Awaitable[None]], delay: float = 0.5) -> None:
        self._mark = mark
        self.delay = delay
        self._pending: set[str] = set()
        self._marker: asyncio.Task[None] | None = None

    def holds(self, run_id: str) -> bool:
        return run_id in self._pending

    async def add(self, run_id: str) -> None:
        """The event buffer's callback once the run's `RunFinished` is published."""
        self._pending.add(run_id)
        if self._marker is None:
            self._marker = asyncio.create_task(self._mark_later(), name="reported-marks")

    async def close(self) -> None:
        if self._marker is not None:
            self._marker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._marker
        self._marker = None
        await self._flush()

    async def _mark_later(self) -> None:
        while self._pending:
            await asyncio.sleep(self.delay)
            await self._flush()
        self._marker = None

    async def _flush(self) -> None:
        run_ids = sorted(self._pending)
        if not run_ids:
            return
        try:
            await self._mark(run_ids)
        except Exception:
            logger.warning("results not marked reported yet; trying again", exc_info=True)
            return
        self._pending.difference_update(run_ids)
