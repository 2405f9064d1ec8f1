"""The fire batch follows how long its transactions take, before any of them runs out of time."""

from __future__ import annotations

from datetime import datetime

from services.scheduler.domain import Outcome
from services.scheduler.store import FireBatch, FireResult
from services.scheduler.ticker import BATCH_SECONDS, FIRST_BATCH, MIN_BATCH, Ticker
from tests.unit.test_scheduler_ticker import Planner, SlowServerStore, ticker_over


class TimedStore(SlowServerStore):
    """Every transaction succeeds and takes `per_schedule` seconds per schedule (on a fake clock)."""

    def __init__(self, due: int, per_schedule: float) -> None:
        super().__init__(due, fits=due)
        self.per_schedule = per_schedule
        self.clock = 0.0

    async def fire_due(
        self, part: int, cutoff: int, limit: int, planner: Planner, now: datetime, wall: datetime
    ) -> FireBatch:
        self.limits.append(limit)
        fired = min(limit, self.due)
        self.due -= fired
        self.clock += fired * self.per_schedule
        return FireBatch(
            FireResult(outcomes=[(f"job:{i}", now, Outcome.REQUESTED) for i in range(fired)]), fired
        )


def timed_ticker(store: TimedStore, batch: int = 500) -> Ticker:
    ticker = ticker_over(store, batch=batch)
    ticker.timer = lambda: store.clock
    return ticker


async def test_a_partition_starts_with_a_small_batch_and_doubles_it_while_batches_are_quick() -> None:
    store = TimedStore(due=2000, per_schedule=0.0)
    ticker = timed_ticker(store)
    assert await ticker.tick() == 2000
    assert store.limits[:5] == [FIRST_BATCH, 2 * FIRST_BATCH, 4 * FIRST_BATCH, 500, 500]


async def test_a_slow_batch_halves_the_next_one_and_caps_the_rest_of_the_pass() -> None:
    store = TimedStore(due=2000, per_schedule=0.0)
    ticker = timed_ticker(store)
    await ticker.tick()  # quick: up to 500
    store.due, store.per_schedule, store.limits = 2000, BATCH_SECONDS / 200, []  # now 200 fit in the time
    assert await ticker.tick() == 2000  # one pass fires everything: no transaction ran out of time
    assert store.limits[:4] == [500, 250, 125, 125] and set(store.limits[2:]) == {125}
    assert ticker.batch_size(0) == 125 and ticker.cap(0) == 125  # a pass with a slow batch keeps the cap


async def test_quick_passes_raise_the_cap_back_up_to_the_configured_size() -> None:
    store = TimedStore(due=2000, per_schedule=0.0)
    ticker = timed_ticker(store)
    await ticker.tick()
    store.due, store.per_schedule = 2000, BATCH_SECONDS / 200
    await ticker.tick()
    assert ticker.cap(0) == 125
    store.per_schedule = 0.0  # the load went away
    for cap in (250, 500, 500):
        store.due, store.limits = 2000, []
        await ticker.tick()
        assert ticker.cap(0) == cap
    assert store.limits[-1] == 500 and ticker.batch_size(0) == 500


async def test_the_time_based_batch_never_shrinks_below_the_minimum() -> None:
    store = TimedStore(due=200, per_schedule=BATCH_SECONDS)  # even one schedule is too slow
    ticker = timed_ticker(store, batch=40)
    assert await ticker.tick() == 200
    assert min(store.limits) == MIN_BATCH and ticker.batch_size(0) == MIN_BATCH
