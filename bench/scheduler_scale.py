"""Scheduler at scale: N recurring schedules (default 100,000) all due in the same minute.

    .venv/bin/python bench/scheduler_scale.py [--schedules 100000] [--rule every|cron]

Uses RabbitMQ at AMQP_URL (default localhost) and MONGO_URL (default: the embedded server, started
here). Steps:

1. Baselines (before the scheduler's run, and the concurrent one again after it; the ratio uses the
   mean of the two): this process publishes N `RunRequested` of the same size, with confirms, through the same
   publisher and topology the scheduler uses — (a) with the scheduler's concurrency (PUBLISH_CONCURRENCY
   confirms in flight), the raw cost of the messages alone and the ratio's denominator; (b) one at a
   time, measured on a sample (`--sequential-sample`) and scaled to N, for reference.
2. Loads N job schedules (every minute) straight into the scheduler's `schedule_state` collection,
   in the form the scheduler writes when it follows `JobChanged` (bulk, to keep the set-up short).
3. Starts one scheduler process (`connect serve scheduler`) before the slot (a minute boundary
   chosen ahead of the load), and consumes `executor.runs`: publish lag = arrival time - the run's slot.
4. Prints a table: lag p50/p99/max, time until all N were published, the scheduler's CPU seconds
   (user+system, from /proc) and peak RSS (VmHWM), and the baseline with the ratio.
5. The database's floor, after the scheduler has stopped: the least any design that writes each
   schedule once per fire asks of this server — one transaction per `--batch` schedules, each an
   `update_many` advancing the same N documents (their real size and indexes) by a minute, nothing
   read, no ledger, no outbox. Printed as seconds, server CPU and a ratio to the baseline: the
   scheduler's ratio cannot go below it on this server (`--no-floor` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.scheduler.domain import scheduled_run_requested
from services.scheduler.store import MongoSchedulerRepository
from services.scheduler.store.documents import epoch_seconds, new_schedule_doc
from shared.contracts.jobs import CronRule, EveryRule, RecurringSchedule
from shared.messaging import Publisher, create_broker
from shared.metrics import create_metrics
from shared.mongo import EmbeddedMongo, create_client
from shared.outbox import PUBLISH_CONCURRENCY
from shared.runid import RunId
from shared.settings import CommonSettings
from shared.topology import Topology, declare_topology
from tests.support.broker import delete_topology
from tests.support.scheduler_harness import snapshot

LOAD_CHUNK = 5000


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--rule", choices=["every", "cron"], default="every")
    parser.add_argument("--batch", type=int, default=500, help="SCHEDULER_FIRE_BATCH")
    parser.add_argument("--load-ms", type=float, default=2.0, help="Expected load time per schedule (ms).")
    parser.add_argument("--timeout", type=float, default=900, help="Give up after this many seconds.")
    parser.add_argument("--no-floor", action="store_true", help="Skip the database floor (step 5).")
    parser.add_argument(
        "--sequential-sample", type=int, default=5000, help="Messages timed for the one-at-a-time baseline."
    )
    return parser.parse_args()


async def baseline(settings: CommonSettings, topology: Topology, count: int, concurrency: int) -> float:
    """Seconds to publish `count` RunRequested with confirms, `concurrency` in flight (then purged)."""
    broker = create_broker(
        settings.amqp_url, service="bench", registry=create_metrics("bench").registry, prefetch=10,
        graceful_timeout=5,
    )  # fmt: skip
    async with broker:
        await broker.connect()
        await declare_topology(broker, topology)
        publisher = Publisher(broker, topology)
        job, now = snapshot(1), datetime.now(UTC)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await publisher.publish(scheduled_run_requested(job, RunId(i + 1, 1), now, slot=now))

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - start
    await purge(settings.amqp_url, topology)
    return elapsed


async def purge(amqp_url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in (topology.executor_runs, topology.logsink_events):
            declared = await channel.get_queue(queue.name, ensure=False)
            await declared.purge()


async def load(settings: CommonSettings, count: int, rule: str, slot: datetime) -> None:
    client = create_client(settings.mongo_url or "")
    repo = MongoSchedulerRepository(client, settings.database("scheduler"))
    await repo.ensure_indexes()
    schedule = RecurringSchedule(
        rule=EveryRule(minutes=1) if rule == "every" else CronRule(expression="* * * * *")
    )
    encoded = schedule.model_dump(mode="json")
    template = snapshot(1, schedule)
    docs = []
    for job_id in range(1, count + 1):
        job = template.model_copy(update={"job_id": job_id, "name": f"bench-{job_id}"})
        doc = new_schedule_doc("job", job_id, repo.db.partitions) | {
            "_id": f"job:{job_id}", "known": True, "active": True, "schedule": encoded,
            "snapshot": job.model_dump_json(), "snapshot_name": job.name, "version": 1,
            "next_slot": slot, "due": epoch_seconds(slot), "next_run": slot,
        }  # fmt: skip
        docs.append(doc)
        if len(docs) == LOAD_CHUNK:
            await repo.schedules.insert_many(docs, ordered=False)
            docs = []
    if docs:
        await repo.schedules.insert_many(docs, ordered=False)
    await client.close()


async def write_floor(
    settings: CommonSettings, count: int, batch: int, server_pid: int | None
) -> tuple[float, float]:
    """Wall and server CPU seconds of one schedule write per fire alone (step 5), on the loaded documents."""
    client = create_client(settings.mongo_url or "")
    schedules = MongoSchedulerRepository(client, settings.database("scheduler")).schedules
    ids = [f"job:{job_id}" for job_id in range(1, count + 1)]
    cpu_before = cpu_seconds(server_pid) if server_pid else float("nan")
    start = time.perf_counter()
    for first in range(0, count, batch):
        chunk = ids[first : first + batch]

        async def advance(session: Any, chunk: list[str] = chunk) -> None:
            await schedules.update_many(
                {"_id": {"$in": chunk}}, {"$inc": {"due": 60, "last_run": 1}}, session=session
            )

        async with client.start_session() as session:
            await session.with_transaction(advance)
    elapsed = time.perf_counter() - start
    server_cpu = cpu_seconds(server_pid) - cpu_before if server_pid else float("nan")
    await client.close()
    return elapsed, server_cpu


def start_scheduler(settings: CommonSettings, batch: int, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "AMQP_URL": settings.amqp_url, "MONGO_URL": settings.mongo_url or "",
        "CONNECT_DB_PREFIX": settings.db_prefix, "CONNECT_AMQP_PREFIX": settings.amqp_prefix,
        "CONNECT_SECRET_KEY": "bench", "SCHEDULER_HTTP_PORT": "0", "SCHEDULER_HTTP_HOST": "127.0.0.1",
        "SCHEDULER_FIRE_BATCH": str(batch), "SCHEDULER_TICK_SECONDS": "0.5", "LOG_LEVEL": "WARNING",
        "SCHEDULER_OUTBOX_RELAY_AFTER": "120",
    }  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "connect"), "serve", "scheduler"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def collect(amqp_url: str, queue_name: str, count: int, timeout: float) -> list[tuple[float, datetime]]:
    """(arrival time, slot) of each RunRequested on executor.runs until `count` arrived."""
    arrivals: list[tuple[float, datetime]] = []
    done = asyncio.Event()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        queue = await channel.get_queue(queue_name, ensure=False)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            arrived = time.time()
            slot = json.loads(message.body)["data"]["slot"]
            arrivals.append((arrived, datetime.fromisoformat(slot)))
            await message.ack()
            if len(arrivals) >= count:
                done.set()

        await queue.consume(on_message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    return arrivals


async def server_pid_of(mongo_url: str) -> int | None:
    """The database server's pid when it runs on this machine (its CPU is read from /proc)."""
    client = create_client(mongo_url)
    try:
        pid = int((await client.admin.command("serverStatus"))["pid"])
    finally:
        await client.close()
    return pid if is_local(pid) else None


def is_local(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").exists()


async def opcounters(mongo_url: str) -> dict[str, int]:
    """The server's operation counters (insert, query, update, delete, getmore, command)."""
    client = create_client(mongo_url)
    try:
        status = await client.admin.command("serverStatus")
    finally:
        await client.close()
    return {k: int(v) for k, v in status["opcounters"].items() if isinstance(v, int | float)}


async def opcounters_at(mongo_url: str, moment: datetime) -> dict[str, int]:
    """The counters at `moment` (the slot), so the idle ticks before it are not counted."""
    await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))
    return await opcounters(mongo_url)


def ops_diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    # The bench's own serverStatus read counts one command; subtract it.
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    diff["command"] = diff.get("command", 0) - 1
    return diff


def print_ops(ops: dict[str, int], fires: int) -> None:
    """Database operations from the slot until all were published, in all and per fire."""
    total = sum(ops.values())
    per = f"{total / fires:.2f}" if fires else "n/a"
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(ops.items()) if v)
    print(f"database operations: {total:,} ({kinds}); per fire {per}")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> int:
    args = parse()
    tmp = Path(tempfile.mkdtemp(prefix="bench-scheduler-"))
    server = None
    mongo_url = os.environ.get("MONGO_URL")
    if not mongo_url:
        server = EmbeddedMongo(tmp / "db")
        mongo_url = server.start()
    tag = uuid.uuid4().hex[:8]
    settings = CommonSettings.model_validate(
        {
            "AMQP_URL": os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/"),
            "MONGO_URL": mongo_url, "CONNECT_DB_PREFIX": f"bench{tag}", "CONNECT_AMQP_PREFIX": f"bench{tag}.",
        }
    )  # fmt: skip
    topology = Topology(prefix=settings.amqp_prefix)
    process = None
    floor: tuple[float, float] | None = None
    try:
        print(f"baseline: publishing {args.schedules} RunRequested with confirms …", flush=True)
        base = await baseline(settings, topology, args.schedules, PUBLISH_CONCURRENCY)
        print(f"  {PUBLISH_CONCURRENCY} in flight: {base:.1f} s", flush=True)
        sample = max(1, min(args.sequential_sample, args.schedules))
        sequential = await baseline(settings, topology, sample, 1) * args.schedules / sample
        print(f"  one at a time ({sample} timed, scaled to N): {sequential:.1f} s", flush=True)
        # The slot: a minute boundary far enough ahead to load N schedules and start the scheduler.
        ahead = timedelta(seconds=40 + args.schedules * args.load_ms / 1000)
        slot = (datetime.now(UTC) + ahead + timedelta(minutes=1)).replace(second=0, microsecond=0)
        start_load = time.perf_counter()
        await load(settings, args.schedules, args.rule, slot)
        print(f"loaded {args.schedules} schedules in {time.perf_counter() - start_load:.1f} s", flush=True)
        process = start_scheduler(settings, args.batch, tmp / "scheduler.log")
        left = (slot - datetime.now(UTC)).total_seconds()
        print(f"slot {slot.isoformat()} (in {left:.0f} s)", flush=True)
        if left < 10:
            print("WARNING: the slot came before the scheduler was ready; raise --load-ms", flush=True)
        cpu_before = cpu_seconds(process.pid)
        server_pid = await server_pid_of(mongo_url)
        server_before = cpu_seconds(server_pid) if server_pid else float("nan")
        ops_at_slot = asyncio.create_task(opcounters_at(mongo_url, slot))
        arrivals = await collect(settings.amqp_url, topology.executor_runs.name, args.schedules, args.timeout)
        cpu = cpu_seconds(process.pid) - cpu_before
        server_cpu = cpu_seconds(server_pid) - server_before if server_pid else float("nan")
        ops = ops_diff(await ops_at_slot, await opcounters(mongo_url))
        rss = peak_rss_mb(process.pid)
        process.terminate()
        process.wait(timeout=60)
        process = None
        # The baseline again, after: on a shared machine the load moves, and the ratio's denominator
        # is the mean of the two, measured around the scheduler's run.
        after = await baseline(settings, topology, args.schedules, PUBLISH_CONCURRENCY)
        print(
            f"baseline after: {PUBLISH_CONCURRENCY} in flight: {after:.1f} s (before {base:.1f} s)",
            flush=True,
        )
        base = (base + after) / 2
        if not args.no_floor:
            floor = await write_floor(settings, args.schedules, args.batch, server_pid)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
        await delete_topology(settings.amqp_url, topology)
        if server is not None:
            server.stop()
    # Lag from the slot every schedule was due at. (A schedule reached only after its next slot came
    # due fires that later slot — catch-up: the last slot only — and records the earlier one missed;
    # its lag still counts from the first slot.)
    lags = [arrived - slot.timestamp() for arrived, _ in arrivals]
    late = sum(1 for _, fired in arrivals if fired != slot)
    # Not all published before the timeout: there is no "all published" time to compare.
    all_done = max(lags) if lags and len(arrivals) == args.schedules else float("nan")
    report(args, arrivals, lags, all_done, cpu, rss, (base, sequential))
    print(f"database server CPU from the scheduler's start until all were published (s): {server_cpu:.1f}")
    print_ops(ops, len(arrivals))
    if floor is not None:
        wall, floor_cpu = floor
        print(
            f"database floor, one schedule write per fire and nothing else: {wall:.1f} s "
            f"(server CPU {floor_cpu:.1f} s), {wall / base:.1f}x the concurrent baseline"
        )
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if late:
        print(f"{late:,} schedules were reached after their next slot came due (fired as catch-up)")
    return 0 if len(arrivals) == args.schedules else 1


def report(
    args: argparse.Namespace, arrivals: list[Any], lags: list[float], all_done: float, cpu: float, rss: float,
    baselines: tuple[float, float],
) -> None:  # fmt: skip
    base, sequential = baselines
    rows = [
        ("schedules due in the minute", f"{args.schedules:,} ({args.rule} rule)"),
        ("RunRequested published", f"{len(arrivals):,}"),
        ("publish lag p50 (s)", f"{percentile(lags, 50):.2f}"),
        ("publish lag p99 (s)", f"{percentile(lags, 99):.2f}"),
        ("all published after slot (s)", f"{all_done:.2f}"),
        ("scheduler CPU (user+sys, s)", f"{cpu:.1f}"),
        ("scheduler peak RSS (MiB)", f"{rss:.0f}"),
        (
            f"baseline: publish N, {PUBLISH_CONCURRENCY} confirms in flight (s, mean before/after)",
            f"{base:.1f}",
        ),
        ("ratio all-published / concurrent baseline", f"{all_done / base:.1f}x"),
        ("baseline: publish N one at a time (s, scaled)", f"{sequential:.1f}"),
        ("ratio all-published / one-at-a-time baseline", f"{all_done / sequential:.1f}x"),
        ("goal: all ≤ 60 s, p99 ≤ 5 s", "met" if all_done <= 60 and percentile(lags, 99) <= 5 else "not met"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, "
          f"{platform.platform()}")  # fmt: skip
    print("-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 24))
    if lags:
        print(f"lag statistics: mean {statistics.mean(lags):.2f} s, stdev {statistics.pstdev(lags):.2f} s")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
