"""Logsink ingest benchmark: 200,000 RunLog/RunProgress events for 1,000 runs.

Starts the embedded database (or uses MONGO_URL) and one logsink process, publishes the events as fast
as possible (publisher confirms on) and measures:
  - the logsink's ingest rate: events/s until every event is stored (the logsink's
    `connect_logsink_events_total` reaches the number published and every log line is in `run_logs`).
    `--mode backlog` (default) publishes everything first and times the logsink from its process start
    (and in steady state, from the first batch seen) until the queue is drained and stored: the
    logsink's own rate, not the publisher's. `--mode live` publishes while the logsink consumes and
    times from the first publish, so it cannot beat the publish rate (persistent messages with
    confirms into a quorum queue; on a loaded 2-core machine ~1,000/s);
  - its peak RSS (VmHWM of the process) and the batch latency (`connect_logsink_batch_seconds`);
  - the database's own ceiling for the same events: the database doing exactly the logsink's writes
    of the same batches (of `--batch-size` events, `--writes-in-flight` batches at once like the
    logsink's): per batch the commands its repository sends (the
    log chunks in one unordered insert, the runs' folded updates in one unordered update, at once,
    journaled like the logsink's), built before and only sent while timed, from one process with no
    broker. It is measured on a fresh server before the ingest and again after it (interleaved: the
    load other processes put on the machine moves between phases) and the ratio is to their mean.
    Also, once before the ingest, the logsink's own service writing the same batches with no broker
    (its planning, chunking and repository included: how much the broker path costs). The 1,000
    runs' records exist (as RunRequested and RunStarted left them) in every case, so progress
    updates running runs;
  - the database operations (the server's `serverStatus().opcounters`, diffed) the logsink's writes
    cost for one short run (RunRequested, RunStarted, 3 RunLog, RunProgress, RunFinished): all in one
    batch, and each event in a batch of its own; and the load average at the start and the end.

    python bench/logsink_ingest.py [--events 200000] [--runs 1000] [--mode backlog|live]
        [--batch-size 5000] [--prefetch 15000] [--writes-in-flight 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from faststream.rabbit import RabbitBroker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymongo import InsertOne, UpdateOne

from services.logsink.config import LogsinkSettings
from services.logsink.domain import Planned, fresh_events, plan, run_writes
from services.logsink.repository import MongoRunRecords
from services.logsink.service import LogsinkService
from shared.contracts import RunLog, RunProgress
from shared.contracts.runs import RunLogData, RunProgressData
from shared.mongo import EmbeddedMongo, create_client, free_port
from shared.runlogs import chunk_lines
from shared.topology import Topology, declare_topology
from tests.support.broker import delete_topology
from tests.support.runlogs import stored_lines
from tests.unit.factories import run_finished, run_log, run_progress, run_requested, run_started

OP_KINDS = ("insert", "query", "update", "delete", "getmore", "command")


def events(total: int, runs: int, progress_every: int) -> list[bytes]:
    """Round-robin over the runs; every `progress_every`-th event of a run is a RunProgress."""
    at = datetime.now(UTC)
    out: list[bytes] = []
    per_run = total // runs
    for n in range(1, per_run + 1):
        for job in range(1, runs + 1):
            run_id = f"{job}.1"
            if n % progress_every == 0:
                data = RunProgressData(
                    run_id=run_id, records_read=n * 100, records_written=n * 100, records_rejected=0,
                    bytes_read=n * 4096, bytes_total=None, records_per_second=1000.0, at=at,
                )  # fmt: skip
                out.append(RunProgress(source="bench", data=data).model_dump_json().encode())
            else:
                line = RunLogData(
                    run_id=run_id, seq=n, message=f"read {n * 100} records from the file", at=at
                )
                out.append(RunLog(source="bench", data=line).model_dump_json().encode())
    return out


async def publish(amqp_url: str, exchange_name: str, bodies: list[bytes], concurrency: int = 1000) -> float:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        started = time.perf_counter()
        for i in range(0, len(bodies), concurrency):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            content_type="application/json",
                        ),
                        routing_key="run.log" if b'"connect.run.log.v1"' in body else "run.progress",
                    )
                    for body in bodies[i : i + concurrency]
                )
            )
        return time.perf_counter() - started


def scrape(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for row in text.splitlines():
        if row and not row.startswith("#"):
            name, _, value = row.rpartition(" ")
            samples[name] = float(value)
    return samples


def quantile(samples: dict[str, float], q: float) -> float:
    buckets = sorted(
        (float(m.group(1)), v)
        for k, v in samples.items()
        if (m := re.fullmatch(r'connect_logsink_batch_seconds_bucket\{le="([^"]+)"\}', k))
    )
    total = samples.get("connect_logsink_batch_seconds_count", 0)
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


class NoMetrics:
    def recorded(self, kind: str, count: int) -> None: ...

    def duplicates(self, kind: str, count: int) -> None: ...

    def batch_written(self, seconds: float) -> None: ...


Write = Callable[[Any], Awaitable[None]]


async def timed_writes(
    mongo_url: str | None, workdir: Path, db_name: str, write: Write, prepare: Write | None = None
) -> tuple[float, float]:
    """Seconds and database CPU seconds of `write(client)`, after an untimed `prepare(client)`.

    Embedded, each measurement gets a database server of its own, started empty like the ingest's, so
    none inherits another's checkpoints or dropped files; with MONGO_URL, a database of its own.
    """
    embedded = EmbeddedMongo(workdir / db_name) if mongo_url is None else None
    url = embedded.start() if embedded is not None else str(mongo_url)
    pid = embedded._process.pid if embedded is not None and embedded._process is not None else None
    client = create_client(url)
    try:
        if prepare is not None:
            await prepare(client)
        cpu_before = cpu_seconds(pid) if pid else float("nan")
        started = time.perf_counter()
        await write(client)
        elapsed = time.perf_counter() - started
        return elapsed, (cpu_seconds(pid) - cpu_before if pid else float("nan"))
    finally:
        await client.drop_database(db_name)
        await client.close()
        if embedded is not None:
            embedded.stop()


Commands = list[tuple[list[InsertOne[dict[str, Any]]], list[UpdateOne]]]


def logsink_commands(planned: list[Planned], batch: int) -> Commands:
    """Per batch, the commands the logsink's repository sends for it (`MongoRunRecords.write` when
    nothing collides: the chunks of the batch's fresh lines, each run's changes folded in one update;
    this bench's events hold no group-run changes and never two starts or ends of one run)."""
    commands: Commands = []
    for i in range(0, len(planned), batch):
        fresh, _ = fresh_events(planned[i : i + batch])
        writes = run_writes(fresh)
        assert all(w.together is not None for w in writes) and not any(p.group_runs for p in fresh)
        chunks = chunk_lines(p.log for p in fresh if p.log is not None)
        updates = [UpdateOne(f, u, upsert=up) for f, u, up in (w.together for w in writes if w.together)]
        commands.append(([InsertOne(c) for c in chunks], updates))
    return commands


async def in_flight(writes: list[Callable[[], Awaitable[None]]], at_once: int) -> None:
    """The writes in order, `at_once` of them at a time (as the logsink's batcher writes batches)."""
    slots = asyncio.Semaphore(at_once)

    async def write(one: Callable[[], Awaitable[None]]) -> None:
        async with slots:
            await one()

    await asyncio.gather(*(write(one) for one in writes))


async def exact_writes(client: Any, db_name: str, commands: Commands, at_once: int) -> None:
    """The database's ceiling for these events: the logsink's own commands, batch by batch (as many
    batches at once as the logsink writes), each batch's chunk insert and run updates at once (as the
    repository sends them), journaled."""
    records = MongoRunRecords(client, db_name)  # its collections, write concern and indexes

    async def batch(inserts: list[InsertOne[dict[str, Any]]], updates: list[UpdateOne]) -> None:
        await asyncio.gather(
            *([records.logs.bulk_write(inserts, ordered=False)] if inserts else []),
            *([records.runs.bulk_write(updates, ordered=False)] if updates else []),
        )

    await in_flight([partial(batch, inserts, updates) for inserts, updates in commands], at_once)


async def logsink_writes(client: Any, db_name: str, planned: list[Planned], batch: int, at_once: int) -> None:
    """The logsink's own writes of these events (its service and repository), batch by batch (as
    many at once as the logsink writes), with no broker: what the database does for the logsink, alone."""
    service = LogsinkService(MongoRunRecords(client, db_name), NoMetrics(), batch_size=batch)
    batches = [planned[i : i + batch] for i in range(0, len(planned), batch)]
    await in_flight([partial(service.write_batch, one) for one in batches], at_once)


async def seed_runs(client: Any, db_name: str, runs: int) -> None:
    """The runs' records as RunRequested and RunStarted left them, so progress updates a running run."""
    records = MongoRunRecords(client, db_name)
    await records.ensure_indexes()
    planned = [
        plan(e.model_dump(mode="json"))
        for job in range(1, runs + 1)
        for e in (run_requested(f"{job}.1"), run_started(f"{job}.1"))
    ]
    await records.write(logs=[], runs=run_writes(planned), group_runs=[])


def short_run(run_id: str) -> list[Planned]:
    events = [run_requested(run_id), run_started(run_id), *(run_log(run_id, seq) for seq in (1, 2, 3))]
    events += [run_progress(run_id), run_finished(run_id)]
    return [plan(event.model_dump(mode="json")) for event in events]


async def opcounters(client: Any) -> Counter[str]:
    status = await client.admin.command("serverStatus")
    return Counter({kind: int(status["opcounters"].get(kind, 0)) for kind in OP_KINDS})


async def short_run_operations(client: Any, db_name: str) -> dict[str, Counter[str]]:
    """The server's operations for the logsink's writes of one short run, by how its events were batched."""
    records = MongoRunRecords(client, db_name)
    await records.ensure_indexes()
    service = LogsinkService(records, NoMetrics())
    # A batch's commands go out at once: open the connections first (a handshake counts as a command).
    await asyncio.gather(*(client.admin.command("ping") for _ in range(3)))
    groupings: dict[str, Callable[[list[Planned]], list[list[Planned]]]] = {
        "one batch": lambda events: [events],
        "a batch per event": lambda events: [[e] for e in events],
    }
    counted: dict[str, Counter[str]] = {}
    for number, (name, grouping) in enumerate(groupings.items(), start=1):
        before = await opcounters(client)
        for batch in grouping(short_run(f"{number}.1")):
            await service.write_batch(batch)
        counted[name] = await opcounters(client) - before
        counted[name]["command"] -= 1  # the second serverStatus itself
    return counted


def load_average() -> str:
    return (
        "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"
    )


def start_logsink(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "connect"), "serve", "logsink"], env=env, stdout=log, stderr=log
    )


def stop_logsink(logsink: subprocess.Popen[bytes]) -> None:
    logsink.send_signal(signal.SIGTERM)
    try:
        logsink.wait(timeout=30)
    except subprocess.TimeoutExpired:
        logsink.kill()
        logsink.wait()


async def wait_ready(http: httpx.AsyncClient, logsink: subprocess.Popen[bytes], log_path: Path) -> None:
    for _ in range(600):
        if logsink.poll() is not None:
            raise SystemExit(f"the logsink exited; see {log_path}")
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit(f"the logsink did not start; see {log_path}")


async def recorded_events(http: httpx.AsyncClient) -> tuple[float, dict[str, float]]:
    samples = scrape((await http.get("/metrics")).text)
    return sum(v for k, v in samples.items() if k.startswith("connect_logsink_events_total{")), samples


async def declare(amqp_url: str, topology: Topology) -> None:
    broker = RabbitBroker(amqp_url)
    await broker.connect()
    try:
        await declare_topology(broker, topology)
    finally:
        await broker.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--progress-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--prefetch", type=int, default=15000)
    parser.add_argument(
        "--writes-in-flight",
        type=int,
        default=LogsinkSettings.model_fields["writes_in_flight"].default,
        help="batches the logsink writes at once; the ceiling writes as many at once",
    )
    parser.add_argument(
        "--mode",
        choices=("backlog", "live"),
        default="backlog",
        help="backlog: publish every event first, then start the logsink and time it draining the queue "
        "(its own ingest rate); live: publish while it consumes (bounded by the publish rate)",
    )
    args = parser.parse_args()
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    tag = uuid.uuid4().hex[:8]
    prefix, db_prefix = f"bench{tag}.", f"bench{tag}"
    topology = Topology(prefix=prefix)
    workdir = Path(tempfile.mkdtemp(prefix="logsink-bench-"))
    external_url = os.environ.get("MONGO_URL")
    load_at_start = load_average()
    bodies = events(args.events, args.runs, args.progress_every)
    # A ceiling and the logsink's writes first, the ingest, then the ceiling again (each on a fresh
    # server of its own when embedded). Only the writes are timed: the commands are built before.
    ceiling_db, own_db, ops_db = f"{db_prefix}_ceiling", f"{db_prefix}_own", f"{db_prefix}_ops"
    short_run_ops: dict[str, Counter[str]] = {}

    async def count_short_run(client: Any) -> None:
        short_run_ops.update(await short_run_operations(client, ops_db))

    await timed_writes(external_url, workdir, ops_db, count_short_run)
    planned = [plan(json.loads(body)) for body in bodies]

    async def measure_ceiling() -> tuple[float, float]:
        commands = logsink_commands(planned, args.batch_size)
        return await timed_writes(
            external_url, workdir, ceiling_db,
            lambda c: exact_writes(c, ceiling_db, commands, args.writes_in_flight),
            prepare=lambda c: seed_runs(c, ceiling_db, args.runs),
        )  # fmt: skip

    ceiling_before, ceiling_cpu_before = await measure_ceiling()
    own_seconds, own_cpu = await timed_writes(
        external_url, workdir, own_db,
        lambda c: logsink_writes(c, own_db, planned, args.batch_size, args.writes_in_flight),
        prepare=lambda c: seed_runs(c, own_db, args.runs),
    )  # fmt: skip
    embedded = None
    mongo_url = external_url
    if not mongo_url:
        embedded = EmbeddedMongo(workdir / "db")
        mongo_url = embedded.start()
    n_logs = sum(b'"connect.run.log.v1"' in b for b in bodies)
    port = free_port()
    env = {
        **os.environ, "AMQP_URL": amqp_url, "MONGO_URL": mongo_url, "CONNECT_DB_PREFIX": db_prefix,
        "CONNECT_AMQP_PREFIX": prefix, "LOGSINK_HTTP_PORT": str(port), "LOGSINK_HTTP_HOST": "127.0.0.1",
        "LOGSINK_BATCH_SIZE": str(args.batch_size), "LOGSINK_PREFETCH": str(args.prefetch),
        "LOGSINK_WRITES_IN_FLIGHT": str(args.writes_in_flight), "LOG_LEVEL": "WARNING",
    }  # fmt: skip
    log_path = workdir / "logsink.log"
    log = log_path.open("wb")
    logsink: subprocess.Popen[bytes] | None = None
    # The embedded database's process, to tell its CPU time apart from the logsink's.
    db_pid = embedded._process.pid if embedded is not None and embedded._process is not None else None
    client = create_client(mongo_url)
    publish_seconds = 0.0
    try:
        logs = client[f"{db_prefix}_logsink"]["run_logs"]
        await seed_runs(client, f"{db_prefix}_logsink", args.runs)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            if args.mode == "backlog":
                await declare(amqp_url, topology)
                publish_seconds = await publish(amqp_url, topology.events.name, bodies)
                db_cpu_before = cpu_seconds(db_pid) if db_pid else 0.0
                started = time.perf_counter()
                logsink = start_logsink(env, log)
                publisher = None
            else:
                logsink = start_logsink(env, log)
                await wait_ready(http, logsink, log_path)
                db_cpu_before = cpu_seconds(db_pid) if db_pid else 0.0
                started = time.perf_counter()
                publisher = asyncio.create_task(publish(amqp_url, topology.events.name, bodies))
            # Steady state: from the first scrape that shows events recorded to the last event stored.
            first_seen: tuple[float, float] | None = None
            while True:
                try:
                    recorded, samples = await recorded_events(http)
                except httpx.HTTPError:  # still starting (it consumes before it serves HTTP)
                    if logsink.poll() is not None:
                        raise SystemExit(f"the logsink exited; see {log_path}") from None
                    await asyncio.sleep(0.05)
                    continue
                now = time.perf_counter()
                if first_seen is None and recorded > 0:
                    first_seen = (now, recorded)
                if recorded >= len(bodies):
                    break
                await asyncio.sleep(0.1)  # each scrape costs the logsink CPU
            elapsed = time.perf_counter() - started
            if len(await stored_lines(logs)) < n_logs:
                raise SystemExit("the logsink counted every event but not every log line is stored")
            if publisher is not None:
                publish_seconds = await publisher
            rss = peak_rss_mib(logsink.pid)
            logsink_cpu = cpu_seconds(logsink.pid)
            db_cpu = cpu_seconds(db_pid) - db_cpu_before if db_pid else float("nan")
        assert first_seen is not None
        steady = (len(bodies) - first_seen[1]) / max(elapsed - (first_seen[0] - started), 1e-9)
        batches = samples.get("connect_logsink_batch_seconds_count", 0)
        mean_batch = samples.get("connect_logsink_batch_seconds_sum", 0) / max(batches, 1)
        rate = len(bodies) / elapsed
        # The ceiling again, after the ingest, with the logsink and its server stopped.
        stop_logsink(logsink)
        logsink = None
        await client.drop_database(f"{db_prefix}_logsink")
        if embedded is not None:
            embedded.stop()
        ceiling_after, ceiling_cpu_after = await measure_ceiling()
        ceilings = (len(bodies) / ceiling_before, len(bodies) / ceiling_after)
        ceiling, own = sum(ceilings) / 2, len(bodies) / own_seconds
        ceiling_cpu = (ceiling_cpu_before + ceiling_cpu_after) / 2
        what = "process start" if args.mode == "backlog" else "first publish"
        print(
            f"mode                       {args.mode} (batch size {args.batch_size:,}, prefetch {args.prefetch:,}, "
            f"{args.writes_in_flight} batch writes in flight)"
        )
        print(
            f"events published           {len(bodies):>10,} ({n_logs:,} RunLog, {len(bodies) - n_logs:,} RunProgress, {args.runs:,} runs)"
        )
        print(f"publish rate               {len(bodies) / publish_seconds:>10,.0f} events/s")
        print(f"logsink ingest rate        {rate:>10,.0f} events/s  ({what} → all stored: {elapsed:.1f} s)")
        print(f"  steady state             {steady:>10,.0f} events/s  (first batch seen → all stored)")
        print(f"logsink peak RSS           {rss:>10,.1f} MiB")
        print(
            f"CPU while ingesting        logsink {logsink_cpu:,.1f} s ({logsink_cpu / len(bodies) * 1e6:,.0f} µs/event), "
            f"database {db_cpu:,.1f} s ({db_cpu / len(bodies) * 1e6:,.0f} µs/event), wall {elapsed:,.1f} s"
        )
        print(
            f"batches written            {batches:>10,.0f}  (mean {len(bodies) / max(batches, 1):,.0f} events)"
        )
        print(
            f"batch latency              mean {mean_batch * 1000:,.1f} ms, p50 ≤ {quantile(samples, 0.5) * 1000:,.0f} ms, p99 ≤ {quantile(samples, 0.99) * 1000:,.0f} ms"
        )
        print(
            f"database ceiling           {ceiling:>10,.0f} events/s  (mean of {ceilings[0]:,.0f} before and "
            f"{ceilings[1]:,.0f} after the ingest: the logsink's own commands of the same batches, journaled, "
            f"no broker, one process; database CPU {ceiling_cpu / len(bodies) * 1e6:,.0f} µs/event)"
        )
        print(
            f"database, logsink writes   {own:>10,.0f} events/s  (the logsink's own writes of the same batches, no "
            f"broker, one process; database CPU {own_cpu / len(bodies) * 1e6:,.0f} µs/event)"
        )
        print(f"ratio logsink / ceiling    {rate / ceiling:>10.2f}  (steady state {steady / ceiling:.2f})")
        print(f"ratio logsink / its writes {rate / own:>10.2f}  (steady state {steady / own:.2f})")
        print("goal: ≥ 20,000 events/s, or the database's own ceiling")
        for name, counts in short_run_ops.items():
            kinds = ", ".join(f"{kind} {counts[kind]}" for kind in OP_KINDS if counts[kind])
            print(f"ops, one short run, {name:<18}{sum(counts.values()):>3}  ({kinds})")
        print(f"{load_at_start} at the start, {load_average()} at the end")
    finally:
        if logsink is not None:
            stop_logsink(logsink)
        log.close()
        if embedded is None or embedded._process is None or embedded._process.poll() is None:
            await client.drop_database(f"{db_prefix}_logsink")
        await client.close()
        await delete_topology(amqp_url, topology)
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
