"""Two scheduler processes, active-active, killed with SIGKILL at random: every slot exactly once.

Time is compressed (`SCHEDULER_CLOCK_SCALE`): an every-minute schedule comes due every 67 ms, so 200
slots of a dozen jobs pass in about 13 s. The test plays the executors (it finishes every requested
run at once), so slots fire or are skipped for overlap as in production."""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from faststream.rabbit import RabbitBroker

from services.dev.processes import SystemProcesses
from shared.contracts import RunRequested
from shared.contracts.jobs import EveryRule, RecurringSchedule
from shared.contracts.runs import RunStatus
from shared.messaging import Publisher, create_broker
from shared.metrics import create_metrics
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.conftest import TEST_SECRET_KEY
from tests.support.scheduler_harness import finished, job_changed, snapshot
from tests.support.waiting import eventually

SCALE = 900.0  # one simulated minute every 67 ms
JOBS = 12
SLOTS = 200
MAX_KILLS = 6
MIN_KILLS = 4  # keep killing until this many, however fast the slots are recorded
JOB_IDS = range(1001, 1001 + JOBS)


def processes_for(settings: CommonSettings, origin: datetime, log_dir: Path) -> SystemProcesses:
    env = {
        "AMQP_URL": settings.amqp_url,
        "MONGO_URL": settings.mongo_url or "",
        "CONNECT_DB_PREFIX": settings.db_prefix,
        "CONNECT_AMQP_PREFIX": settings.amqp_prefix,
        "CONNECT_SECRET_KEY": TEST_SECRET_KEY,
        "CONNECT_GRACEFUL_TIMEOUT": "5",
        "SCHEDULER_TICK_SECONDS": "0.05",
        "SCHEDULER_CLOCK_ORIGIN": origin.isoformat(),
        "SCHEDULER_CLOCK_SCALE": str(SCALE),
        "SCHEDULER_CATCH_UP_SLOTS": "100000",  # after a crash every missed slot is still due
        "SCHEDULER_PARTITIONS": "4",
        "SCHEDULER_PARTITION_LEASE_SECONDS": "1.5",
        "SCHEDULER_OUTBOX_RELAY_AFTER": "2",
        "SCHEDULER_OUTBOX_RELAY_INTERVAL": "0.5",
    }
    return SystemProcesses(env=env, log_dir=log_dir)


async def test_two_replicas_killed_at_random_fire_every_slot_exactly_once(
    settings: CommonSettings, mongo: MongoClient, topology: Topology, artifacts_dir: Path
) -> None:
    origin = datetime.now(UTC)

    def sim_now() -> datetime:
        return origin + (datetime.now(UTC) - origin) * SCALE

    system = processes_for(settings, origin, artifacts_dir / "scheduler-ha" / settings.db_prefix)
    received: list[RunRequested] = []
    broker = _fake_executors(settings, topology, received)
    db = mongo[settings.database("scheduler")]
    kills = 0
    try:
        system.start("scheduler", instance="-a")
        system.start("scheduler", instance="-b")
        system.wait_ready()
        await broker.start()
        publisher = Publisher(broker, topology)
        every_minute = RecurringSchedule(rule=EveryRule(minutes=1))
        for job_id in JOB_IDS:
            await publisher.publish(job_changed(snapshot(job_id, every_minute)))

        async def all_slots_recorded() -> bool:
            for job_id in JOB_IDS:
                if await db["fire_ledger"].count_documents({"owner": f"job:{job_id}"}) < SLOTS:
                    return False
            return True

        deadline = time.monotonic() + 90
        rng = random.Random()
        while kills < MIN_KILLS or not await all_slots_recorded():
            assert time.monotonic() < deadline, "the replicas did not record 200 slots per job in time"
            await asyncio.sleep(rng.uniform(0.3, 2.0))
            if kills >= MAX_KILLS:
                continue
            victim = rng.choice(sorted(system.processes))
            system.kill(victim)  # SIGKILL at a random instant
            kills += 1
            system.start("scheduler", instance=victim.removeprefix("scheduler"))
            await asyncio.to_thread(system.wait_ready)
        await eventually(
            lambda: _all_published(db),
            what="the outbox to be empty (the relay resends what the kills left)",
            timeout=30,
        )
        ledger = await db["fire_ledger"].find({}).to_list(None)
        requested = {(e["owner"], e["slot"]) for e in ledger if e["outcome"] == "requested"}
        await eventually(
            lambda: _seen(received) >= requested, what="every requested run delivered", timeout=30
        )
    finally:
        await broker.stop()
        system.stop()
    # The replicas kept firing until stopped: messages that arrived after the snapshot above are
    # checked against the ledger as it stands once everything has stopped.
    final = await db["fire_ledger"].find({}).to_list(None)

    assert kills >= MIN_KILLS
    _assert_exactly_once(ledger, received, final)


def _fake_executors(
    settings: CommonSettings, topology: Topology, received: list[RunRequested]
) -> RabbitBroker:
    broker = create_broker(
        settings.amqp_url, service="test", registry=create_metrics("test").registry, prefetch=200,
        graceful_timeout=5,
    )  # fmt: skip
    publisher = Publisher(broker, topology)

    @broker.subscriber(topology.executor_runs)
    async def executor(message: RunRequested) -> None:
        received.append(message)
        data = message.data
        await publisher.publish(finished(data.job.job_id, data.run_id, RunStatus.SUCCEEDED))

    return broker


async def _all_published(db: Any) -> bool:
    return await db["outbox"].count_documents({"published": False}) == 0


def _seen(received: list[RunRequested]) -> set[tuple[str, datetime]]:
    return {(f"job:{m.data.job.job_id}", m.data.slot) for m in received if m.data.slot is not None}


def _assert_exactly_once(
    ledger: list[dict[str, Any]], received: list[RunRequested], final: list[dict[str, Any]]
) -> None:
    by_owner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in ledger:
        by_owner[entry["owner"]].append(entry)
    runs: dict[tuple[str, datetime], set[str]] = defaultdict(set)
    ids: dict[tuple[str, datetime], set[str]] = defaultdict(set)
    for message in received:
        key = (f"job:{message.data.job.job_id}", message.data.slot)
        runs[key].add(message.data.run_id)
        ids[key].add(message.id)
    for job_id in JOB_IDS:
        entries = sorted(by_owner[f"job:{job_id}"], key=lambda e: e["slot"])
        slots = [e["slot"] for e in entries]
        window = slots[:SLOTS]
        # 200 consecutive minutes, each exactly once (no gap, no duplicate).
        assert window == [window[0] + timedelta(minutes=i) for i in range(SLOTS)], f"job {job_id}"
        assert len(set(slots)) == len(slots)
        fired = [e for e in entries if e["outcome"] == "requested"]
        assert fired, f"job {job_id} never fired"
        assert {e["outcome"] for e in entries} <= {"requested", "overlap"}
        # Run numbers count up from 1 without gaps: no allocation was lost or doubled.
        numbers = sorted(int(e["run_id"].split(".")[1]) for e in fired)
        assert numbers == list(range(1, len(fired) + 1)), f"job {job_id}"
        for entry in fired:
            key = (entry["owner"], entry["slot"])
            # Delivered, under exactly one run id and one message id (a resend after a kill between
            # the broker's confirm and the outbox mark repeats the same message, which consumers drop).
            assert runs[key] == {entry["run_id"]}, key
            assert len(ids[key]) == 1, key
    published_slots = {key for key in runs if key[0].startswith("job:")}
    fired_slots = {(e["owner"], e["slot"]) for e in ledger if e["outcome"] == "requested"}
    fired_by_the_end = {(e["owner"], e["slot"]): e["run_id"] for e in final if e["outcome"] == "requested"}
    # Everything fired by the snapshot was published; nothing was published that the ledger lacks,
    # and every message carries its slot's one run id.
    assert fired_slots <= published_slots <= set(fired_by_the_end)
    for key in published_slots:
        assert runs[key] == {fired_by_the_end[key]}, key
        assert len(ids[key]) == 1, key
