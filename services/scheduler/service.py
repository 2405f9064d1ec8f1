"""Scheduler use cases: run now, group runs, triggers, run completion, catalog events, the outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.scheduler.clock import Clock, utc_now
from services.scheduler.domain import build_run_requested, trigger_slot
from services.scheduler.domain.deadlines import expired_reply, past_deadline
from services.scheduler.errors import CommandExpired
from services.scheduler.ports import EventPublisher, SchedulerStore
from services.scheduler.store.fires import FireResult
from services.scheduler.store.runs import RunRequest
from shared import tracing
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
from shared.errors import Conflict
from shared.metrics import SchedulerMetrics
from shared.outbox import Entry

logger = logging.getLogger(__name__)
RUN_NOW_BATCH = 100  # run-now commands allocated in one transaction at most


@dataclass(frozen=True)
class _LagObserved:
    """The publisher, observing each message's fire lag once the broker confirmed it."""

    publisher: EventPublisher
    observe: Callable[[Envelope], None]

    async def publish(self, message: Envelope) -> None:
        await self.publisher.publish(message)
        self.observe(message)


@dataclass
class _Waiting:
    command: RunJob
    now: datetime
    answer: asyncio.Future[RunJobReply]
    traceparent: str | None = None  # the command's, taken before it waits for a batch


class SchedulerService:
    def __init__(
        self,
        repo: SchedulerStore,
        publisher: EventPublisher,
        clock: Clock = utc_now,
        *,
        wall: Clock = utc_now,
        metrics: SchedulerMetrics | None = None,
    ) -> None:
        self.repo = repo
        self.publisher = publisher
        self.clock = clock  # schedule time (slots)
        self.wall = wall  # real time (leases, outbox ages)
        self.metrics = metrics
        self._observed = _LagObserved(publisher, self._observe_lag)
        self._waiting: list[_Waiting] = []
        self._allocating: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- commands ----------------------------------------------------------------------------------
    async def run_now(self, command: RunJob) -> RunJobReply:
        """Allocate `JobID.RunID` and request the run; refuse while the job is running or expired.

        The job's schedule is not touched: Run now never moves the next scheduled run. Commands that
        arrive while an allocation is committing wait for it and are then allocated together, in one
        transaction (`allocate_runs`): a lone command waits for nothing. The answer leaves as soon as
        the transaction commits; the RunRequested is published after it (the outbox entry committed
        with the run resends it if this replica dies first).
        """
        if past_deadline(command, self.wall()):
            return self.not_carried_out(command)
        answer: asyncio.Future[RunJobReply] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(command, self.clock(), answer, tracing.current_traceparent()))
        if self._allocating is None or self._allocating.done():
            self._allocating = asyncio.create_task(self._allocate_waiting())
        return await asyncio.shield(answer)

    async def _allocate_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:RUN_NOW_BATCH], self._waiting[RUN_NOW_BATCH:]
            try:
                results = await self.repo.allocate_runs([self._request(w) for w in batch], self.wall())
            except Exception as exc:  # each waiting command fails as a lone one would (RetryableError)
                for waiting in batch:
                    if not waiting.answer.done():
                        waiting.answer.set_exception(exc)
                continue
            allocated: list[tuple[str, Envelope, str | None]] = []
            for waiting, result in zip(batch, results, strict=True):
                reply = self._reply(waiting.command, result)
                if not isinstance(result, Conflict):
                    message, entry = result
                    allocated.append((entry, message, waiting.traceparent))
                    logger.info(
                        "run requested",
                        extra={"run_id": message.data.run_id, "job_id": waiting.command.data.job.job_id},
                    )
                if not waiting.answer.done():
                    waiting.answer.set_result(reply)
            if allocated:
                self._in_background(self._publish_entries(allocated))

    def _request(self, waiting: _Waiting) -> RunRequest:
        command, now = waiting.command, waiting.now
        return RunRequest(
            request_id=command.id, job_id=command.data.job.job_id, now=now,
            build=lambda run_id: build_run_requested(command, run_id, now), expires_at=command.data.job.expires_at,
            still_wanted=lambda: not past_deadline(command, self.wall()), traceparent=waiting.traceparent,
        )  # fmt: skip

    def _reply(self, command: RunJob, result: tuple[RunRequested, str] | Conflict) -> RunJobReply:
        if isinstance(result, CommandExpired):
            return self.not_carried_out(command)
        if isinstance(result, Conflict):
            return RunJobReply(accepted=False, reason=result.message)
        return RunJobReply(accepted=True, run_id=result[0].data.run_id)

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _publish_entries(self, entries: Sequence[tuple[str, Envelope, str | None]]) -> None:
        """Publish one message per outbox entry, all at once; the confirmed ones are marked in one update."""
        batch = [
            Entry(entry, (message,), traceparents=(traceparent,)) for entry, message, traceparent in entries
        ]
        await self.repo.outbox.deliver(self._observed, batch, ordered=False)

    async def settle(self) -> None:
        """Wait for the allocations and publishes still in flight (drain; tests)."""
        while self._background or (self._allocating is not None and not self._allocating.done()):
            pending = [*self._background, *([self._allocating] if self._allocating else [])]
            await asyncio.gather(*pending, return_exceptions=True)

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
        """Publish an outbox entry's messages (in order unless they need none: a fire's run requests);
        it is marked published once all are confirmed."""
        if not result.messages:
            return True
        assert result.outbox_id is not None, "messages are published from the entry committed with them"
        entry = Entry(result.outbox_id, result.messages, traceparents=result.traceparents)
        return await self.repo.outbox.deliver(self._observed, [entry], ordered=result.ordered)

    async def relay_outbox(self, older_than: timedelta) -> int:
        """Publish what a crash or a refusal left behind (consumers drop duplicates), claimed so that two
        replicas never publish one entry at once; published entries past the retention are pruned."""
        return await self.repo.outbox.relay(self._observed, older_than, self.wall())

    # --- metrics -----------------------------------------------------------------------------------
    def count(self, result: FireResult) -> None:
        if self.metrics is None:
            return
        for _, _, outcome in result.outcomes:
            self.metrics.fires_total.labels(outcome=outcome.value).inc()

    def _observe_lag(self, message: Envelope) -> None:
        if self.metrics is None or not isinstance(message, RunRequested):
            return
        due = message.data.fire_at or message.data.slot  # a spread slot is due at slot + offset, not before
        if due is not None:
            lag = (self.clock() - due).total_seconds()
            self.metrics.fire_lag_seconds.observe(max(lag, 0.0))
