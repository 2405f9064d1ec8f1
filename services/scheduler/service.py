"""Scheduler use cases."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.scheduler.domain import build_run_requested
from services.scheduler.ports import EventPublisher, SchedulerRepository
from shared.contracts import RunFinished, RunJob, RunJobReply, RunRequested
from shared.errors import Conflict, RetryableError

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class SchedulerService:
    def __init__(self, repo: SchedulerRepository, publisher: EventPublisher, clock: Clock = utc_now) -> None:
        self.repo = repo
        self.publisher = publisher
        self.clock = clock

    async def run_now(self, command: RunJob) -> RunJobReply:
        """Allocate `JobID.RunID` and request the run; refuse while the job is running."""
        now = self.clock()
        try:
            message = await self.repo.allocate_run(
                request_id=command.id,
                job_id=command.data.job.job_id,
                build=lambda run_id: build_run_requested(command, run_id, now),
            )
        except Conflict as refused:
            return RunJobReply(accepted=False, reason=refused.message)
        await self._publish(message.data.run_id, message)
        logger.info("run requested", extra={"run_id": message.data.run_id, "job_id": command.data.job.job_id})
        return RunJobReply(accepted=True, run_id=message.data.run_id)

    async def relay_outbox(self, older_than: timedelta) -> int:
        """Publish what a crash between commit and publish left behind; the executor drops duplicates."""
        pending = await self.repo.unpublished(self.clock() - older_than)
        for message in pending:
            await self._publish(message.data.run_id, message)
        return len(pending)

    async def run_finished(self, event: RunFinished) -> None:
        await self.repo.release_job(event.data.job_id, event.data.run_id)

    async def _publish(self, run_id: str, message: RunRequested) -> None:
        try:
            await self.publisher.publish(message)
        except RetryableError:
            logger.warning("publish failed; the outbox relay will resend", extra={"run_id": run_id})
            return
        await self.repo.mark_published(run_id)
