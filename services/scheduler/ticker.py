"""The scheduler's heartbeat: hold partitions, fire due slots, expire what has expired."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
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

logger = logging.getLogger(__name__)
MIN_BATCH = 10
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
        # Per partition: schedules per transaction, halved when one ran out of time (a loaded server
        # takes longer than a transaction may last), doubled back up to `batch` after each success.
        self.batch_of: dict[int, int] = {}

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
                    self.batch_of[part] = max(MIN_BATCH, self.batch_size(part) // 2)
                    logger.warning(
                        "partition not fired this pass",
                        extra={"partition": part, "error": str(exc), "next_batch": self.batch_of[part]},
                    )
                    return 0
                self.batch_of[part] = min(self.batch, self.batch_size(part) * 2)
                return handled

        # Partitions in parallel: one's transaction overlaps another's publishing.
        return sum(await asyncio.gather(*(one(p) for p in parts)))

    def batch_size(self, part: int) -> int:
        return self.batch_of.get(part, self.batch)

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
        return plan_slots(doc.schedule, doc.next_slot, self.service.clock(), self.catch_up)

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
            batch = await self.repo.fire_due(part, cutoff, limit, self.plan, now, wall)
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

    async def _finish(self, result: FireResult) -> None:
        self.service.count(result)
        await self.service.publish(result)

    async def expire(self, expired: list[ScheduleDoc]) -> None:
        """Ask the catalog to delete expired jobs and groups once no run of theirs is in flight."""
        wall = self.service.wall()
        for doc in expired:
            if doc.running:
                continue  # a run in progress finishes first
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
