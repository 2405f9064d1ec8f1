"""Scheduler use cases: run now, group runs, triggers, run completion, catalog events, the outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from services.scheduler.clock import Clock, utc_now
from services.scheduler.domain import Outcome, build_run_requested, trigger_slot
from services.scheduler.domain.deadlines import expired_reply, past_deadline
from services.scheduler.errors import CommandExpired
from services.scheduler.ports import EventPublisher, SchedulerStore
from services.scheduler.store.base import decode_outbox
from services.scheduler.store.fires import FireResult
from shared.contracts import (
    Envelope,
    GroupChanged,
    GroupDeleted,
    JobChanged,
    JobDeleted,
    RunFinished,
    RunGroup,
    RunJob,
    RunJobReply,
    RunRequested,
    StopGroupRun,
    TriggerFired,
)
from shared.errors import Conflict, RetryableError
from shared.metrics import Metrics

logger = logging.getLogger(__name__)
PUBLISH_CONCURRENCY = 200


class SchedulerService:
    def __init__(
        self,
        repo: SchedulerStore,
        publisher: EventPublisher,
        clock: Clock = utc_now,
        *,
        wall: Clock = utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self.repo = repo
        self.publisher = publisher
        self.clock = clock  # schedule time (slots)
        self.wall = wall  # real time (leases, outbox ages)
        self.metrics = metrics

    # --- commands ----------------------------------------------------------------------------------
    async def run_now(self, command: RunJob) -> RunJobReply:
        """Allocate `JobID.RunID` and request the run; refuse while the job is running or expired.

        The job's schedule is not touched: Run now never moves the next scheduled run.
        """
        if past_deadline(command, self.wall()):
            return self.not_carried_out(command)
        now = self.clock()
        job = command.data.job
        try:
            message, entry = await self.repo.allocate_run(
                request_id=command.id, job_id=job.job_id, now=now, wall=self.wall(),
                build=lambda run_id: build_run_requested(command, run_id, now), expires_at=job.expires_at,
                still_wanted=lambda: not past_deadline(command, self.wall()),
            )  # fmt: skip
        except CommandExpired:
            return self.not_carried_out(command)
        except Conflict as refused:
            return RunJobReply(accepted=False, reason=refused.message)
        await self.publish(FireResult(outbox_id=entry, messages=[message]))
        logger.info("run requested", extra={"run_id": message.data.run_id, "job_id": job.job_id})
        return RunJobReply(accepted=True, run_id=message.data.run_id)

    async def run_group(self, command: RunGroup) -> RunJobReply:
        """Start a group run (`GroupID.RunID`); refuse while it runs, or when unknown or expired."""
        if past_deadline(command, self.wall()):
            return self.not_carried_out(command)
        try:
            group_run_id, entry, messages = await self.repo.run_group(
                request_id=command.id, group_id=command.data.group_id, requested_by=command.data.requested_by,
                trigger=command.data.trigger, now=self.clock(), wall=self.wall(),
                still_wanted=lambda: not past_deadline(command, self.wall()),
            )  # fmt: skip
        except CommandExpired:
            return self.not_carried_out(command)
        except Conflict as refused:
            return RunJobReply(accepted=False, reason=refused.message)
        if messages:
            await self.publish(FireResult(outbox_id=entry, messages=messages))
        logger.info("group run started", extra={"run_id": group_run_id})
        return RunJobReply(accepted=True, run_id=group_run_id)

    def not_carried_out(self, command: RunJob | RunGroup) -> RunJobReply:
        """The caller gave up waiting (it answered 503 "nothing was started"), so nothing starts now."""
        late = (self.wall() - command.deadline).total_seconds() if command.deadline else 0.0
        logger.warning(
            "command past its deadline: not carried out",
            extra={"id": command.id, "type": command.type, "subject": command.subject, "late_seconds": late},
        )
        return expired_reply(command)

    async def stop_group_run(self, command: StopGroupRun) -> RunJobReply:
        group_run_id = command.data.group_run_id
        try:
            result = await self.repo.stop_group_run(
                group_run_id, command.data.requested_by, self.clock(), self.wall()
            )
        except Conflict as refused:
            return RunJobReply(accepted=False, reason=refused.message)
        await self.publish(result)
        return RunJobReply(accepted=True, run_id=group_run_id)

    # --- events ------------------------------------------------------------------------------------
    async def run_finished(self, event: RunFinished) -> None:
        """Free the job for its next slot and advance its group run, if any."""
        data = event.data
        result = await self.repo.run_finished(
            data.job_id, data.run_id, data.status, self.clock(), self.wall()
        )
        await self.publish(result)

    async def trigger_fired(self, event: TriggerFired) -> None:
        """Every active on-event job or group subscribed to the trigger runs once per idempotency key."""
        data = event.data
        slot = trigger_slot(data.name, data.idempotency_key)
        for owner in await self.repo.trigger_owners(data.name):
            result = await self.repo.fire_trigger(
                owner.id, slot, dict(data.params), self.clock(), self.wall()
            )
            self.count(result)
            await self.publish(result)

    async def job_changed(self, event: JobChanged) -> None:
        await self.repo.apply_job(event.data.job, event.data.active, self.clock())

    async def job_deleted(self, event: JobDeleted) -> None:
        await self.repo.delete("job", event.data.job_id)

    async def group_changed(self, event: GroupChanged) -> None:
        await self.repo.apply_group(event.data, self.clock())

    async def group_deleted(self, event: GroupDeleted) -> None:
        await self.repo.delete("group", event.data.group_id)

    # --- outbox ------------------------------------------------------------------------------------
    async def publish(self, result: FireResult) -> bool:
        """Publish an outbox entry's messages; mark it published once all are confirmed."""
        if not result.messages:
            return True
        ok = await self.publish_all(result.messages)
        if ok and result.outbox_id is not None:
            await self.repo.mark_published(result.outbox_id)
        return ok

    async def publish_all(self, messages: Sequence[Envelope]) -> bool:
        gate = asyncio.Semaphore(PUBLISH_CONCURRENCY)

        async def one(message: Envelope) -> bool:
            async with gate:
                try:
                    await self.publisher.publish(message)
                except RetryableError:
                    logger.warning("publish failed; the outbox relay will resend", extra={"id": message.id})
                    return False
            self._observe_lag(message)
            return True

        # Group messages keep their order (GroupRunStarted before the first member's RunRequested).
        if len(messages) <= 3:
            return all([await one(m) for m in messages])
        return all(await asyncio.gather(*(one(m) for m in messages)))

    async def relay_outbox(self, older_than: timedelta) -> int:
        """Publish what a crash between commit and publish left behind; consumers drop duplicates."""
        wall = self.wall()
        entries = await self.repo.claim_unpublished(wall - older_than, wall)
        for entry in entries:
            await self.publish(FireResult(outbox_id=entry["_id"], messages=decode_outbox(entry)))
        return len(entries)

    # --- metrics -----------------------------------------------------------------------------------
    def count(self, result: FireResult) -> None:
        if self.metrics is None:
            return
        for _, _, outcome in result.outcomes:
            self.metrics.scheduler_fires_total.labels(outcome=outcome.value).inc()
            if outcome is Outcome.MISSED:
                self.metrics.scheduler_missed_slots_total.inc()

    def _observe_lag(self, message: Envelope) -> None:
        if self.metrics is not None and isinstance(message, RunRequested) and message.data.slot is not None:
            lag = (self.clock() - message.data.slot).total_seconds()
            self.metrics.scheduler_fire_lag_seconds.observe(max(lag, 0.0))
