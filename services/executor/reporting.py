"""Everything a run tells the world: start, numbered log lines, progress, the one final event.

Last line of defence for secrets: every log line and the final error are scrubbed with the run's
redactor, which the adapters fill with each connection secret they decrypt (`shared.redact`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from services.executor.domain import Tally
from services.executor.ports import EventPublisher, LeaseStore
from shared import redact
from shared.contracts import RunFinished, RunLog, RunProgress, RunRequested, RunStarted, RunStatus
from shared.contracts.runs import (
    LogLevel,
    RunFinishedData,
    RunLogData,
    RunProgressData,
    RunStartedData,
)

SOURCE = "connect/executor"


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
        self.last_seq = 0
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
        # The counter lives with the lease, so a take-over continues the numbering without a gap.
        self.last_seq = await self.leases.next_log_seq(self.run_id)
        data = RunLogData(
            run_id=self.run_id,
            seq=self.last_seq,
            level=level,
            message=self.redactor.scrub(message),
            fields={k: self.redactor.scrub(v) if isinstance(v, str) else v for k, v in fields.items()},
            at=datetime.now(UTC),
        )
        await self.publisher.publish(RunLog(source=SOURCE, subject=self.run_id, data=data))

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
        self, status: RunStatus, tally: Tally, *, error: str | None = None, rejects_file: str | None = None
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
            ),
        )
