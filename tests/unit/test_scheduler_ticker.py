"""The ticker against an in-memory `TickerStore`: a partition whose transactions run out of time is fired
in smaller transactions until they fit, and goes back to full batches once they do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from services.scheduler.domain import CatchUp, Outcome, SlotPlan
from services.scheduler.domain.fires import OwnerKind
from services.scheduler.ports import TickerStore
from services.scheduler.service import SchedulerService
from services.scheduler.store import FireBatch, FireResult
from services.scheduler.store.documents import ScheduleDoc
from services.scheduler.store.fires import PartitionWork
from services.scheduler.ticker import MIN_BATCH, Ticker
from shared.contracts import Envelope, JobSnapshot
from shared.contracts.catalog import GroupChangedData
from shared.contracts.runs import Trigger
from shared.errors import RetryableError
from tests.unit.factories import T0
from tests.unit.test_scheduler_service import InMemorySchedulerRepository

Planner = Callable[[ScheduleDoc], SlotPlan]


class SlowServerStore:
    """One partition with `due` schedules; a transaction of more than `fits` of them runs out of time."""

    def __init__(self, due: int, fits: int) -> None:
        self.due, self.fits = due, fits
        self.limits: list[int] = []  # the batch size of every fire transaction attempted
        self.probes = 0

    async def partition_work(self, parts: Sequence[int], now_s: int, limit: int) -> PartitionWork:
        self.probes += 1
        return PartitionWork(due={0} if self.due else set())

    async def fire_due(
        self, part: int, cutoff: int, limit: int, planner: Planner, now: datetime, wall: datetime
    ) -> FireBatch:
        self.limits.append(limit)
        if limit > self.fits and self.due > self.fits:
            raise RetryableError("database error in the scheduler: operation would exceed time limit")
        fired = min(limit, self.due)
        self.due -= fired
        outcomes = [(f"job:{i}", now, Outcome.REQUESTED) for i in range(fired)]
        return FireBatch(FireResult(outcomes=outcomes), fired)

    async def fire_one(self, key: str, planner: Planner, now: datetime, wall: datetime) -> FireResult:
        return FireResult()

    async def fire_group(self, key: str, planner: Planner, now: datetime, wall: datetime) -> FireResult:
        return FireResult()

    async def run_group(
        self, *, request_id: str, group_id: int, requested_by: str, trigger: Trigger, now: datetime,
        wall: datetime, still_wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[str, str | None, list[Envelope]]:  # fmt: skip
        raise NotImplementedError

    async def stop_group_run(
        self, group_run_id: str, requested_by: str, now: datetime, wall: datetime
    ) -> FireResult:
        raise NotImplementedError

    async def apply_job(self, job: JobSnapshot, active: bool, now: datetime) -> None:
        return None

    async def apply_group(self, group: GroupChangedData, now: datetime) -> None:
        return None

    async def delete(self, kind: OwnerKind, owner_id: int) -> None:
        return None

    async def expired(self, parts: Sequence[int], now_s: int) -> list[ScheduleDoc]:
        return []

    async def expire_sent(self, key: str, wall: datetime) -> None:
        return None

    async def heartbeat(self, instance: str, wall: datetime) -> int:
        return 1

    async def hold_partitions(self, instance: str, wall: datetime, live: int) -> list[int]:
        return [0]

    async def release_partitions(self, instance: str) -> None:
        return None


class Unpublished:
    async def publish(self, message: Envelope) -> None:
        return None


def ticker_over(store: SlowServerStore, batch: int) -> Ticker:
    service = SchedulerService(InMemorySchedulerRepository(), Unpublished(), lambda: T0, wall=lambda: T0)
    port: TickerStore = store
    return Ticker(service, port, instance="test", catch_up=CatchUp(grace=timedelta(seconds=90)), batch=batch)


async def test_a_partition_too_slow_for_full_batches_is_fired_in_smaller_ones() -> None:
    store = SlowServerStore(due=1000, fits=130)
    ticker = ticker_over(store, batch=500)

    passes = [await ticker.tick() for _ in range(4)]

    # The first batch (100) fits and doubles; 200 runs out of time: the pass ends, the cap is 100.
    assert passes == [0, 900, 0, 0]  # the next pass fires the rest in batches of 100
    assert store.limits[:3] == [100, 200, 100] and set(store.limits[2:]) == {100} and store.due == 0
    assert ticker.cap(0) == 200  # doubled after the pass that succeeded; an idle pass fires nothing
    store.due = 10
    await ticker.tick()
    assert ticker.cap(0) == 400  # and doubled again after the next pass with work


async def test_the_batch_never_shrinks_below_the_minimum() -> None:
    store = SlowServerStore(due=50, fits=0)
    ticker = ticker_over(store, batch=40)
    for _ in range(6):
        await ticker.tick()
    assert min(store.limits) == MIN_BATCH


async def test_a_pass_with_nothing_due_opens_no_fire_transaction() -> None:
    store = SlowServerStore(due=0, fits=500)
    ticker = ticker_over(store, batch=500)
    assert [await ticker.tick() for _ in range(3)] == [0, 0, 0]
    assert store.probes == 3 and store.limits == []
