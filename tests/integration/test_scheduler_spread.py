"""Spread start times on the real broker and database: a job and a group fire at slot + their offset,
exactly once, with two schedulers racing on the same partition, one of them replaced between the slot
and the fire time; a slot before the expiration date fires although its fire time is after it.

The schedule clock is the test's (`ManualClock`, set on each scheduler's service) and the schedulers'
own ticking is switched off (`tick_seconds` of an hour): the test ticks them itself, so nothing waits
for real time and every pass is observed when it has returned."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

from services.scheduler.store import MongoSchedulerRepository
from services.scheduler.store.documents import partition_of
from services.scheduler.ticker import Ticker
from shared.contracts import GroupChanged
from shared.contracts.catalog import GroupChangedData
from shared.contracts.jobs import EveryRule, RecurringSchedule
from shared.mongo import MongoClient
from shared.scheduling import spread_offset
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.scheduler_harness import Harness, job_changed, running_scheduler, snapshot
from tests.support.waiting import eventually

SCHEDULE = RecurringSchedule(rule=EveryRule(minutes=5), spread_minutes=4)
SLOT = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # a 5-minute mark
PARTITIONS = 4
OPTIONS: dict[str, Any] = {"tick_seconds": 3600, "partitions": PARTITIONS, "partition_lease_seconds": 3}


class ManualClock:
    """Schedule time that moves only when the test sets it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def offset_of(kind: str, owner_id: int) -> timedelta:
    return spread_offset(SCHEDULE, kind, owner_id)


def owner_with_offset(kind: str, ids: range, at_least: int) -> int:
    """A deterministic owner whose offset leaves room for the checks just before it."""
    return next(i for i in ids if offset_of(kind, i) >= timedelta(seconds=at_least))


JOB = owner_with_offset("job", range(1000, 2000), 5)
GROUP = owner_with_offset("group", range(1, 1000), 5)
MEMBER = 3001
EXPIRING = owner_with_offset("job", range(4000, 5000), 5)
EXPIRES_AT = SLOT + timedelta(seconds=2)  # after the slot, before its fire time


def ticker(h: Harness) -> Ticker:
    value: Ticker = h.app.state.ticker
    return value


async def race(schedulers: list[Harness], key: str) -> int:
    """Every scheduler fires `key`'s partition at once, as if each held it (leases only divide the
    work), then looks for what has expired in it; returns the slots handled, all schedulers together."""
    part = partition_of(key, PARTITIONS)
    handled = await asyncio.gather(*(ticker(h).fire_partitions([part]) for h in schedulers))
    await asyncio.gather(*(expire(h, part) for h in schedulers))
    return sum(handled)


async def expire(h: Harness, part: int) -> None:
    """The ticker's expiry step for one partition (whoever holds it at the moment)."""
    t = ticker(h)
    await t.expire(await t.repo.expired([part], int(h.service.clock().timestamp())))


async def started(
    stack: AsyncExitStack, settings: CommonSettings, mongo: MongoClient, name: str, clock: ManualClock
) -> Harness:
    h = await stack.enter_async_context(running_scheduler(settings, mongo, instance_id=name, **OPTIONS))
    h.service.clock = clock
    return h


async def test_spread_owners_fire_at_slot_plus_offset_once_with_two_schedulers(
    settings: CommonSettings, mongo: MongoClient, topology: Topology
) -> None:
    clock = ManualClock(SLOT - timedelta(minutes=1))
    job_key, group_key, expiring_key = f"job:{JOB}", f"group:{GROUP}", f"job:{EXPIRING}"
    async with AsyncExitStack() as outer:
        b = await started(outer, settings, mongo, "b", clock)
        first = AsyncExitStack()
        a = await started(first, settings, mongo, "a", clock)
        await a.publish(job_changed(snapshot(JOB, SCHEDULE)))
        await a.publish(job_changed(snapshot(MEMBER)))
        await a.publish(job_changed(snapshot(EXPIRING, SCHEDULE, expires_at=EXPIRES_AT)))
        group = GroupChangedData(
            group_id=GROUP, name="spread", job_ids=(MEMBER,), active=True, schedule=SCHEDULE
        )
        await a.publish(GroupChanged(source="test", data=group))
        for key, kind, owner in (("job", "job", JOB), ("group", "group", GROUP), ("job", "job", EXPIRING)):
            doc = await a.until_known(f"{key}:{owner}")
            fires = SLOT + offset_of(kind, owner)
            assert (doc["next_slot"], doc["next_run"], doc["due"]) == (SLOT, fires, int(fires.timestamp()))

        # Between the slot and the fire times: nothing fires; the expiring job is not expired yet.
        clock.now = SLOT + timedelta(seconds=3)
        for key in (job_key, group_key, expiring_key):
            assert await race([a, b], key) == 0
        assert await a.ledger(job_key) == [] and await a.ledger(group_key) == []
        assert (await a.schedule_doc(expiring_key) or {}).get("expire_sent_at") is None

        # Scheduler a goes away before the fire times; c takes its place knowing nothing but the database.
        await first.aclose()
        c = await started(outer, settings, mongo, "c", clock)
        for kind, owner in sorted(
            (("job", JOB), ("group", GROUP), ("job", EXPIRING)), key=lambda o: offset_of(*o)
        ):
            key = f"{kind}:{owner}"
            fires = SLOT + offset_of(kind, owner)
            clock.now = fires - timedelta(seconds=1)
            assert await race([b, c], key) == 0, f"{key} fired before slot + offset"
            clock.now = fires
            assert await race([b, c], key) == 1, f"{key} fired once at slot + offset"
            [entry] = await b.ledger(key)
            assert (entry["slot"], entry["outcome"]) == (SLOT, "requested")
            after = await b.schedule_doc(key)
            assert after is not None
            later = SLOT + timedelta(minutes=5)
            assert (after["next_slot"], after["next_run"], after["previous_run"]) == (
                later,
                later + offset_of(kind, owner),
                SLOT,
            )

        # Each run went out once, carrying the nominal slot (the run's identity).
        requested = await eventually(
            lambda: [m for m in b.requested + c.requested if m.data.job.job_id in (JOB, MEMBER, EXPIRING)],
            until=lambda found: len(found) >= 3,
            what="the three runs requested",
        )
        assert sorted(m.data.job.job_id for m in requested) == sorted((JOB, MEMBER, EXPIRING))
        assert {m.data.slot for m in requested if m.data.job.job_id != MEMBER} == {SLOT}
        due = {m.data.job.job_id: m.data.fire_at for m in requested}  # the fire lag counts from it
        assert due == {
            JOB: SLOT + offset_of("job", JOB), MEMBER: SLOT + offset_of("group", GROUP),
            EXPIRING: SLOT + offset_of("job", EXPIRING),
        }  # fmt: skip
        assert {m.data.run_id for m in requested if m.data.job.job_id == JOB} == {f"{JOB}.1"}

        # Published at the fire time on the test's clock: no lag at all, although each was an offset late.
        lag = [h.app.state.runtime.metrics.registry.get_sample_value(f"connect_scheduler_fire_lag_seconds_{part}")
               for h in (b, c) for part in ("sum", "count")]  # fmt: skip
        assert lag[0::2] == [0.0, 0.0] and sum(n or 0 for n in lag[1::2]) == 3

        # The expiring job's slot came before its expiration: it ran; once the run ends, it is expired.
        expiring_run = next(m.data.run_id for m in requested if m.data.job.job_id == EXPIRING)
        await b.finish(EXPIRING, expiring_run)
        await eventually(
            lambda: b.schedule_doc(expiring_key), until=lambda d: not d.get("running"), what="run ended"
        )
        await expire(b, partition_of(expiring_key, PARTITIONS))
        assert (await b.schedule_doc(expiring_key) or {}).get("expire_sent_at") is not None
        sent = await eventually(lambda: b.expires + c.expires, what="Expire sent to the catalog")
        assert [m.data.id for m in sent] == [EXPIRING]
    await mongo.drop_database(settings.database("scheduler"))


async def test_a_changed_spread_keeps_a_pending_slot_and_an_older_document_is_the_same_schedule(
    settings: CommonSettings, mongo: MongoClient
) -> None:
    repo = MongoSchedulerRepository(mongo, settings.database("scheduler"), partitions=1)
    await repo.ensure_indexes()
    try:
        key, now = f"job:{JOB}", SLOT + timedelta(seconds=2)  # the slot has passed, its fire time has not
        await repo.apply_job(snapshot(JOB, SCHEDULE), True, SLOT - timedelta(minutes=1))
        narrower = SCHEDULE.model_copy(update={"spread_minutes": 4 - 1})
        await repo.apply_job(snapshot(JOB, narrower, version=2), True, now)
        doc = await repo.schedules.find_one({"_id": key})
        fires = SLOT + spread_offset(narrower, "job", JOB)
        assert fires > now  # (the owner's new offset is past the moment of the change)
        assert doc is not None and (doc["next_slot"], doc["due"]) == (SLOT, int(fires.timestamp()))
        # A document written before `spread_minutes` existed holds the same schedule: the cursor stays.
        plain = RecurringSchedule(rule=EveryRule(minutes=5))
        await repo.schedules.update_one({"_id": key}, {"$set": {"schedule": plain.model_dump(mode="json")}})
        await repo.schedules.update_one({"_id": key}, {"$unset": {"schedule.spread_minutes": ""}})
        await repo.apply_job(snapshot(JOB, plain, version=3), True, SLOT + timedelta(minutes=7))
        kept = await repo.schedules.find_one({"_id": key})
        assert kept is not None and kept["next_slot"] == SLOT
    finally:
        await mongo.drop_database(settings.database("scheduler"))
