"""The scheduler's heartbeat: hold partitions, fire due slots, expire what has expired."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from datetime import datetime, timedelta

from services.scheduler.domain import CatchUp, SlotPlan, plan_slots
from services.scheduler.domain.fires import kind_of
from services.scheduler.ports import TickerStore
from services.scheduler.service import SchedulerService
from services.scheduler.store.documents import ScheduleDoc
from services.scheduler.store.fires import FireResult
from shared.contracts import Expire
from shared.contracts.catalog import ExpireData
from shared.errors import RetryableError
from shared.scheduling import spread_offset

logger = logging.getLogger(__name__)
MIN_BATCH = 10
# A batch's transaction should take at most this long (seconds): the embedded server reaps a
# transaction idle 5 s between two statements (EMBEDDED_TRANSACTION_LIFETIME_SECONDS), and on a loaded
# machine one statement of a large batch takes that long, so the whole batch is redone. Longer: the
# next batch is halved, and so is the size it may grow to (its cap) for the rest of the pass; under a
# quarter of it the next batch doubles up to the cap; a pass whose batches all took under half of it
# doubles the cap back up to `batch`. A partition's first batch is small: a transaction of `batch`
# schedules that runs out of time on a loaded server is all redone.
BATCH_SECONDS = 1.5
FIRST_BATCH = 100
# Schedules one idle-pass probe reads at most; past it every held partition is fired as before.
PROBE_LIMIT = 256


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Ticker:
    def __init__(
        self,
        service: SchedulerService,
        store: TickerStore,
        *,
        instance: str,
        catch_up: CatchUp,
        batch: int = 500,
        lease_seconds: float = 10.0,
        expire_resend: timedelta = timedelta(seconds=60),
        concurrency: int = 4,
    ) -> None:
        self.concurrency = concurrency
        self.service = service
        self.repo = store
        self.instance = instance or default_instance_id()
        self.catch_up = catch_up
        self.batch = batch
        self.renew_every = timedelta(seconds=lease_seconds / 3)
        self.expire_resend = expire_resend
        self.partitions: list[int] = []
        self._renewed: datetime | None = None
        # Per partition: schedules per transaction, halved when one ran out of time or took longer
        # than BATCH_SECONDS (a loaded server), doubled back up to `batch` when one was quick.
        self.batch_of: dict[int, int] = {}
        self.cap_of: dict[int, int] = {}
        self.slowest: dict[int, float] = {}  # the slowest batch of a partition's pass (seconds)
        self.timer = time.monotonic

    async def tick(self) -> int:
        """One pass: returns how many slots were handled.

        One probe over every held partition says which have a slot due, and one query what has
        expired, so an idle pass costs two queries however many partitions this replica holds; only
        partitions with a slot due are fired. A probe that hit its limit fires all of them.
        """
        await self.hold()
        now_s = math.floor(self.service.clock().timestamp())
        work = await self.repo.partition_work(self.partitions, now_s, PROBE_LIMIT)
        handled = await self.fire_partitions(sorted(work.due) if work.complete else self.partitions)
        await self.expire(await self.repo.expired(self.partitions, now_s))
        return handled

    async def fire_partitions(self, parts: list[int]) -> int:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(part: int) -> int:
            async with gate:
                try:
                    handled = await self.fire_partition(part)
                except RetryableError as exc:  # e.g. a bounded wait ran out: the next pass retries
                    self.slowest.pop(part, None)
                    self.batch_of[part] = self.cap_of[part] = max(MIN_BATCH, self.batch_size(part) // 2)
                    logger.warning(
                        "partition not fired this pass",
                        extra={"partition": part, "error": str(exc), "next_batch": self.batch_of[part]},
                    )
                    return 0
                if self.slowest.pop(part, 0.0) < BATCH_SECONDS / 2:
                    self.cap_of[part] = min(self.batch, self.cap(part) * 2)
                return handled

        # Partitions in parallel: one's transaction overlaps another's publishing.
        return sum(await asyncio.gather(*(one(p) for p in parts)))

    def batch_size(self, part: int) -> int:
        return self.batch_of.get(part, min(self.batch, FIRST_BATCH))

    def cap(self, part: int) -> int:
        return self.cap_of.get(part, self.batch)

    async def hold(self) -> None:
        wall = self.service.wall()
        if self._renewed is not None and wall - self._renewed < self.renew_every:
            return
        live = await self.repo.heartbeat(self.instance, wall)
        self.partitions = await self.repo.hold_partitions(self.instance, wall, live)
        self._renewed = wall

    async def stop(self) -> None:
        await self.repo.release_partitions(self.instance)

    def plan(self, doc: ScheduleDoc) -> SlotPlan:
        schedule = doc.schedule
        offset = spread_offset(schedule, doc.kind, doc.owner_id)
        return plan_slots(schedule, doc.next_slot, self.service.clock(), self.catch_up, offset)

    async def fire_partition(self, part: int) -> int:
        """Fire what was due when the pass began, so one partition never starves the others.

        (Without the cut-off, a partition whose pass outlasts a period would keep firing its own
        schedules as they come due again while the partitions after it wait.)
        """
        handled = 0
        cutoff = math.floor(self.service.clock().timestamp())
        while True:
            now, wall = self.service.clock(), self.service.wall()
            limit = self.batch_size(part)
            started = self.timer()
            batch = await self.repo.fire_due(part, cutoff, limit, self.plan, now, wall)
            self.adapt(part, limit, batch.seen, self.timer() - started)
            await self._finish(batch.result)
            outcomes = len(batch.result.outcomes)
            for key in batch.singles:  # groups, and the schedules of a batch that was refused
                fire = self.repo.fire_group if kind_of(key) == "group" else self.repo.fire_one
                single = await fire(key, self.plan, now, self.service.wall())
                await self._finish(single)
                outcomes += len(single.outcomes)
            handled += outcomes
            if batch.seen < limit or not outcomes:
                return handled

    def adapt(self, part: int, limit: int, seen: int, seconds: float) -> None:
        """The next batch of `part` from how long this one took (see BATCH_SECONDS)."""
        self.slowest[part] = max(self.slowest.get(part, 0.0), seconds)
        if seconds > BATCH_SECONDS:
            self.batch_of[part] = self.cap_of[part] = max(MIN_BATCH, limit // 2)
        elif seconds < BATCH_SECONDS / 4 and seen >= limit:
            self.batch_of[part] = min(self.cap(part), limit * 2)

    async def _finish(self, result: FireResult) -> None:
        self.service.count(result)
        await self.service.publish(result)

    async def expire(self, expired: list[ScheduleDoc]) -> None:
        """Ask the catalog to delete expired jobs and groups once no run of theirs is in flight."""
        wall = self.service.wall()
        for doc in expired:
            if doc.running or doc.slot_before_expiry:
                continue  # a run in progress finishes first, and a slot before expiry fires first
            sent = doc.raw.get("expire_sent_at")
            if sent is not None and wall - sent < self.expire_resend:
                continue
            command = Expire(
                source="connect/scheduler", subject=doc.id, data=ExpireData(kind=doc.kind, id=doc.owner_id)
            )
            try:
                await self.service.publisher.publish(command)
                await self.repo.expire_sent(doc.id, wall)
            except RetryableError:  # the next pass asks again
                logger.warning("could not ask the catalog to expire", extra={"owner": doc.id})
                continue
            logger.info("expired", extra={"owner": doc.id})
