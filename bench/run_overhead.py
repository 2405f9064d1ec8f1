"""Run overhead: Connect against a hand-built Celery runner doing the same unit of work.

    .venv/bin/python bench/run_overhead.py [--rounds 2] [--runs 100] [--slots 2] [--tables 1] [--breakdown]
    .venv/bin/python bench/run_overhead.py --rounds 10 --slots 2,8 --breakdown   # the full measurement

Needs the `bench` extra (Celery): `.venv/bin/pip install -e '.[bench]'`. RabbitMQ at AMQP_URL (default
localhost), MONGO_URL or the embedded server (started here), OpenSSH's sshd (started here).

The unit of work, identical on both sides: read a 1-row CSV over SFTP (real sshd, host key pinned),
upsert the row into a collection, write a run record. (Connect: one table for all jobs unless
--tables N spreads them; it lets one run at a time write a table, which Celery's runner does not.)
  - Connect: the four services as processes (one executor, EXECUTOR_CONCURRENCY = slots); one on-demand
    import job per run; a round POSTs run-now for every job at once (the whole path: API -> catalog ->
    scheduler -> executor -> logsink) and ends when the logsink has recorded every run as finished.
    The catalog waits up to --request-timeout for the scheduler's answer (its default, 10 s, refuses
    part of a burst today: bench/run_now.py measures that).
  - Celery: one worker, `--concurrency` = slots (prefork), acks_late, task_reject_on_worker_lost,
    prefetch 1, a quorum queue of its own on the same broker, MongoDB result backend on the same server;
    a round sends one task per run and ends when the backend has every result.
Rounds interleave (Connect, Celery, Connect, Celery, ...) so both see the same machine. Per round it
prints runs/s and the ratio Connect/Celery, the database server's CPU seconds per run (from /proc) and
its operations per run (serverStatus opcounters, all clients, less the bench's own polling), and the load
average. `--breakdown` adds, per run, the operations by namespace (the server's `top` counters).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    TERMINAL,
    ConnectSystem,
    Profiled,
    ServerDelta,
    ServerProbe,
    bench_servers,
    breakdown_rows,
    connect_system,
    cpu_seconds,
    create_import_jobs,
    load_average,
    per_run,
    row_file,
    run_now,
    tree_cpu_seconds,
    wait_until_counted,
    write_row_files,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 900.0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="Interleaved rounds per side and slot count.")
    parser.add_argument("--runs", type=int, default=100, help="Runs per round.")
    parser.add_argument("--slots", default="2", help="Comma-separated worker/slot counts to measure.")
    parser.add_argument(
        "--tables",
        type=int,
        default=1,
        help="Connect tables the jobs merge into (one writer per table at once).",
    )
    parser.add_argument("--breakdown", action="store_true", help="Ops per run by namespace (server `top`).")
    parser.add_argument(
        "--profile-runs", type=int, default=20, help="Runs of the profiled --breakdown round."
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=300,
        help="CATALOG_RUN_REQUEST_TIMEOUT for Connect's run-now.",
    )
    parser.add_argument("--poll", type=float, default=0.2, help="Seconds between completion checks.")
    parser.add_argument("--mongo-url", default=os.environ.get("MONGO_URL"))
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    )
    parser.add_argument("--celery-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.slot_counts = [int(s) for s in str(args.slots).split(",") if s.strip()]
    if not args.slot_counts or min(args.rounds, args.runs, args.tables, *args.slot_counts) < 1:
        parser.error("--rounds, --runs, --tables and every --slots value must be at least 1")
    return args


# --- the hand-built Celery runner ---------------------------------------------------------------------


@dataclass(frozen=True)
class CeleryConfig:
    """Everything the worker process needs, passed to it as JSON in BENCH_CELERY."""

    amqp_url: str
    mongo_url: str
    database: str
    queue: str
    sshd_port: int
    sshd_user: str
    sshd_key: str
    sshd_host_key: str
    sshd_root: str

    @property
    def backend_url(self) -> str:
        return (
            self.mongo_url.replace("/?", f"/{self.database}?", 1)
            if "/?" in self.mongo_url
            else self.mongo_url
        )


def celery_app(config: CeleryConfig) -> Any:
    from celery import Celery

    app = Celery("bench", broker=config.amqp_url, backend=config.backend_url)
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_default_queue=config.queue, task_default_exchange=config.queue, task_default_routing_key=config.queue,
        task_default_queue_type="quorum", broker_connection_retry_on_startup=True,
        mongodb_backend_settings={"database": config.database, "taskmeta_collection": "taskmeta"},
        worker_enable_remote_control=False, worker_hijack_root_logger=False, task_serializer="json",
    )  # fmt: skip

    @app.task(name="bench.import_row")  # type: ignore[untyped-decorator]
    def task(job: int, run_id: str) -> dict[str, int]:
        return import_row(config, job, run_id)

    return app


_mongo: MongoClient[dict[str, Any]] | None = None


def import_row(config: CeleryConfig, job: int, run_id: str) -> dict[str, int]:
    """The task: SFTP read of the job's 1-row CSV, upsert of its row, the run record."""
    global _mongo
    started = datetime.now(UTC)
    text = asyncio.run(sftp_read(config, row_file(job)))
    header, *rows = [line.split(",") for line in text.splitlines() if line]
    if _mongo is None:  # one client per worker process
        _mongo = MongoClient(config.mongo_url)
    db = _mongo[config.database]
    for row in rows:
        record = dict(zip(header, row, strict=True))
        doc = {"customer_id": record["id"], "email": record["email"], "points": int(record["points"])}
        db["table_rows"].update_one({"customer_id": doc["customer_id"]}, {"$set": doc}, upsert=True)
    counts = {"read": len(rows), "written": len(rows)}
    db["runs"].insert_one({"_id": run_id, "job": job, "status": "succeeded", "counts": counts,
                           "started_at": started, "finished_at": datetime.now(UTC)})  # fmt: skip
    return counts


async def sftp_read(config: CeleryConfig, path: str) -> str:
    import asyncssh

    known: tuple[list[Any], list[Any], list[Any]] = (
        [asyncssh.import_public_key(config.sshd_host_key)],
        [],
        [],
    )
    async with asyncssh.connect(
        "127.0.0.1", port=config.sshd_port, username=config.sshd_user, client_keys=[config.sshd_key],
        known_hosts=known, agent_path=None, config=None,
    ) as ssh, ssh.start_sftp_client() as sftp, sftp.open(f"{config.sshd_root}/{path}") as handle:  # fmt: skip
        return str(await handle.read())


def celery_worker_main() -> None:
    config = CeleryConfig(**json.loads(os.environ["BENCH_CELERY"]))
    app = celery_app(config)
    app.worker_main(["worker", "--pool", "prefork", "--concurrency", os.environ["BENCH_SLOTS"],
                     "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING",
                     "-Q", config.queue])  # fmt: skip


class CeleryRunner:
    """One worker process and the producer side; `round` sends one task per job and waits for the results."""

    def __init__(self, config: CeleryConfig, slots: int, log: Path) -> None:
        self.config = config
        self.app = celery_app(config)
        self.log = log
        env = os.environ | {"BENCH_CELERY": json.dumps(config.__dict__), "BENCH_SLOTS": str(slots)}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--celery-worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                cwd=ROOT, start_new_session=True,
            )  # fmt: skip
        self.client: MongoClient[dict[str, Any]] = MongoClient(config.mongo_url)
        self.db = self.client[config.database]
        self.db["table_rows"].create_index("customer_id", unique=True)

    def round(self, tag: str, jobs: list[int], poll: float) -> tuple[float, int]:
        """(seconds, polls) for one task per job, from the first send until every result is stored."""
        started = time.perf_counter()
        ids = [self.app.send_task("bench.import_row", args=[job, f"{job}.{tag}"]).id for job in jobs]
        query = {"_id": {"$in": ids}, "status": "SUCCESS"}
        polls = wait_until_counted(self.db["taskmeta"], query, len(ids), TIMEOUT, poll, self.alive)
        return time.perf_counter() - started, polls

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited ({self.process.returncode}); see {self.log}")

    def check(self, tag: str, jobs: list[int]) -> None:
        found = self.db["runs"].count_documents({"_id": {"$in": [f"{job}.{tag}" for job in jobs]}})
        if found != len(jobs):
            raise RuntimeError(f"Celery round {tag}: {found} run records for {len(jobs)} runs")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with self.app.connection_for_write() as connection:
            channel = connection.default_channel
            channel.queue_delete(self.config.queue)
            channel.exchange_delete(self.config.queue)
        self.client.close()


# --- Connect ----------------------------------------------------------------------------------------------


class ConnectRunner:
    def __init__(self, system: ConnectSystem, mongo_url: str) -> None:
        self.system = system
        self.client: MongoClient[dict[str, Any]] = MongoClient(mongo_url)
        database, collection = system.runs_collection
        self.runs = self.client[database][collection]

    def round(self, jobs: list[int], poll: float) -> tuple[float, int, list[str]]:
        """(seconds, polls, run ids): run-now for every job at once, until every run is recorded finished."""
        started = time.perf_counter()
        run_ids = asyncio.run(self._request_all(jobs))
        query = {"_id": {"$in": run_ids}, "status": {"$in": list(TERMINAL)}}
        polls = wait_until_counted(self.runs, query, len(run_ids), TIMEOUT, poll)
        return time.perf_counter() - started, polls, run_ids

    async def _request_all(self, jobs: list[int]) -> list[str]:
        async with await self.system.api() as api:
            return list(await asyncio.gather(*(run_now(api, job) for job in jobs)))

    def check(self, run_ids: list[str]) -> None:
        ok = self.runs.count_documents({"_id": {"$in": run_ids}, "status": "succeeded"})
        if ok != len(run_ids):
            raise RuntimeError(f"Connect: {len(run_ids) - ok} of {len(run_ids)} runs did not succeed")


# --- measuring ------------------------------------------------------------------------------------------


@dataclass
class Measured:
    side: str
    runs: int
    seconds: float
    delta: ServerDelta
    databases: tuple[str, ...]  # the side's own database names (prefixes)
    process_cpu: dict[str, float]  # CPU seconds of each of the side's processes (and sshd) in the round

    @property
    def rate(self) -> float:
        return self.runs / self.seconds

    @property
    def own_ops(self) -> int:
        return sum(sum(c.values()) for c in self.delta.within(*self.databases).values())


@dataclass(frozen=True)
class Side:
    name: str
    databases: tuple[str, ...]
    polled: str  # the namespace the bench polls for completion (its polls are not the side's work)
    processes: dict[str, int]  # name -> pid of what works for this side (children included)


def processes_cpu(processes: dict[str, int]) -> dict[str, float]:
    # The bench's own process is counted alone: every server and service here is its child.
    return {
        name: cpu_seconds(pid) if pid == os.getpid() else tree_cpu_seconds(pid)
        for name, pid in processes.items()
    }


def measured(probe: ServerProbe, side: Side, runs: int, work: Any) -> Measured:
    """Runs `work` (returning seconds and polls) between two server samples; the bench's own ops removed."""
    cpu_before = processes_cpu(side.processes)
    before = probe.sample()
    seconds, polls = work()
    delta = probe.sample().minus(before)
    cpu = {name: used - cpu_before[name] for name, used in processes_cpu(side.processes).items()}
    delta.ops -= probe.sample_cost + Counter({"command": polls})
    if side.polled in delta.namespace_ops:
        delta.namespace_ops[side.polled] -= Counter({"command": polls})
    return Measured(side.name, runs, seconds, delta, side.databases, cpu)


def report_idle(probe: ServerProbe, seconds: float = 5.0) -> None:
    """What the server does while both sides wait for work: it is in every round's figures."""
    before = probe.sample()
    time.sleep(seconds)
    delta = probe.sample().minus(before)
    delta.ops -= probe.sample_cost
    print(f"  idle (both sides started, no runs): {per_run(delta.ops, seconds)} db ops/s, "
          f"db CPU {100 * delta.cpu / seconds:.0f} %", flush=True)  # fmt: skip


def report_round(slots: int, number: int, connect: Measured, celery: Measured) -> None:
    for m in (connect, celery):
        print(f"  slots {slots} round {number} {m.side:<7} {m.rate:6.2f} runs/s  ({m.seconds:5.1f} s)  "
              f"db CPU {m.delta.cpu / m.runs:.3f} s/run  db ops/run: own databases {m.own_ops / m.runs:.1f}, "
              f"all clients {per_run(m.delta.ops, m.runs)}", flush=True)  # fmt: skip
        shares = ", ".join(f"{name} {used / m.runs * 1000:.1f}" for name, used in m.process_cpu.items())
        print(f"      process CPU ms/run: {shares}, database {m.delta.cpu / m.runs * 1000:.1f}", flush=True)
    print(f"  slots {slots} round {number} ratio Connect/Celery {connect.rate / celery.rate:.2f}x  "
          f"({load_average()})", flush=True)  # fmt: skip


def report_breakdown(m: Measured) -> None:
    print(f"  {m.side}, last round: operations per run by namespace (server `top`; `command` includes "
          "findAndModify):")  # fmt: skip
    for row in breakdown_rows(m.delta, m.runs, m.databases):
        print(row)


def profiled_round(client: MongoClient[dict[str, Any]], side: Side, runs: int, work: Any) -> None:
    """An extra, unmeasured round with the server's profiler on: every command by namespace and name."""
    databases = [db for db in client.list_database_names() if db.startswith(side.databases)] + ["admin"]
    with Profiled(client, databases) as profile:
        _, polls = work()
    print(
        f"  {side.name}: commands per run by namespace and name (profiled round, {runs} runs; the admin "
        "database holds every client's commitTransaction/abortTransaction):"
    )
    for row in profile.rows(runs, Counter({(side.polled, "aggregate"): polls})):
        print(row)


def _trend(per_round: list[float]) -> float:
    """Growth from the first third of the rounds to the last (a round's noise averages out; growth does not)."""
    third = max(1, len(per_round) // 3)
    first, last = sum(per_round[:third]) / third, sum(per_round[-third:]) / third
    return 100 * (last / first - 1) if first > 0 else float("nan")


def summary(slots: int, rounds: list[tuple[Measured, Measured]]) -> None:
    ratios = [c.rate / k.rate for c, k in rounds]
    cpu = [c.delta.cpu / c.runs for c, _ in rounds]
    spread = 100 * (max(cpu) / min(cpu) - 1) if min(cpu) > 0 else float("nan")
    celery_cpu = [k.delta.cpu / k.runs for _, k in rounds]
    runs = sum(c.runs for c, _ in rounds)
    own, every = sum(c.own_ops for c, _ in rounds) / runs, sum(c.delta.total for c, _ in rounds) / runs
    print(f"slots {slots}: ratio Connect/Celery per round {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(goal >= 1.0: {'met' if min(ratios) >= 1 else 'not met'}); Connect db CPU/run per round "
          f"{', '.join(f'{c:.3f}' for c in cpu)} s (max/min {spread:+.0f} %, goal within 10 %; trend, the last "
          f"rounds' mean over the first's: {_trend(cpu):+.0f} %, Celery's {_trend(celery_cpu):+.0f} %); "
          f"Connect db ops/run {own:.1f} in its own databases, {every:.1f} all clients (goal <= 10)",
          flush=True)  # fmt: skip


def measure_slots(
    args: argparse.Namespace, mongo_url: str, sshd: Any, key: Path, work: Path, slots: int
) -> None:
    tag = uuid.uuid4().hex[:8]
    config = CeleryConfig(
        amqp_url=args.amqp_url, mongo_url=mongo_url, database=f"celery{tag}", queue=f"bench{tag}.celery",
        sshd_port=sshd.port, sshd_user=sshd.username, sshd_key=str(key), sshd_host_key=sshd.host_key,
        sshd_root=str(sshd.root),
    )  # fmt: skip
    probe = ServerProbe(mongo_url)
    celery = CeleryRunner(config, slots, work / f"celery{tag}.log")
    try:
        # A burst of run-now waits in the scheduler longer than the catalog's default 10 s answer
        # deadline (bench/run_now.py measures that); here every run must be asked for, so it waits longer.
        env = {"EXECUTOR_CONCURRENCY": str(slots), "CATALOG_RUN_REQUEST_TIMEOUT": str(args.request_timeout)}
        with connect_system(args.amqp_url, mongo_url, "bench", **env) as system:
            jobs = asyncio.run(_jobs(system, sshd, args.runs, args.tables))
            connect = ConnectRunner(system, mongo_url)
            warm_up(connect, celery, jobs, args.poll)
            shared = {"sshd": sshd_pid(sshd), "bench client": os.getpid()}
            services = {name: p.process.pid for name, p in system.processes.processes.items()}
            connect_side = Side(
                "Connect", (system.settings.db_prefix,), ".".join(system.runs_collection), services | shared
            )
            celery_side = Side(
                "Celery", (config.database,), f"{config.database}.taskmeta",
                {"celery worker": celery.process.pid} | shared,
            )  # fmt: skip
            report_idle(probe)
            rounds = []
            for number in range(1, args.rounds + 1):
                c = measured(probe, connect_side, len(jobs), lambda: _connect_round(connect, args.poll, jobs))
                k = measured(
                    probe, celery_side, len(jobs), lambda n=number: celery.round(f"r{n}", jobs, args.poll)
                )
                celery.check(f"r{number}", jobs)
                report_round(slots, number, c, k)
                rounds.append((c, k))
            if args.breakdown:
                report_breakdown(rounds[-1][0])
                report_breakdown(rounds[-1][1])
            summary(slots, rounds)
            if args.breakdown:
                few = jobs[: args.profile_runs]
                profiled_round(
                    probe.client, connect_side, len(few), lambda: _connect_round(connect, args.poll, few)
                )
                profiled_round(
                    probe.client, celery_side, len(few), lambda: celery.round("prof", few, args.poll)
                )
    finally:
        celery.stop()
        probe.close()


def sshd_pid(sshd: Any) -> int:
    """The listening sshd (its per-connection children's CPU is counted once it has reaped them)."""
    return int((Path(sshd.root).parent / "sshd.pid").read_text())


def _connect_round(connect: ConnectRunner, poll: float, jobs: list[int]) -> tuple[float, int]:
    seconds, polls, run_ids = connect.round(jobs, poll)
    connect.check(run_ids)
    return seconds, polls + 1  # the check's count is one more aggregate


async def _jobs(system: ConnectSystem, sshd: Any, count: int, tables: int) -> list[int]:
    async with await system.api() as api:
        return await create_import_jobs(api, sshd, count, tables)


def warm_up(connect: ConnectRunner, celery: CeleryRunner, jobs: list[int], poll: float) -> None:
    """One unmeasured run on each side: start-up costs (first connections, imports) stay out of round 1."""
    _connect_round(connect, poll, jobs[:1])
    celery.round("warm", jobs[:1], poll)


def main() -> None:
    args = parse()
    if args.celery_worker:
        celery_worker_main()
        return
    work = Path(tempfile.mkdtemp(prefix="bench-run-overhead-"))
    with bench_servers(work, args.mongo_url) as (mongo_url, sshd):
        write_row_files(sshd.root, args.runs)
        key = work / "client_key"
        key.write_text(sshd.private_key)
        key.chmod(0o600)
        print(f"run overhead: {args.rounds} interleaved rounds of {args.runs} runs, slots {args.slot_counts}; "
              f"database {mongo_url}; {load_average()}", flush=True)  # fmt: skip
        for slots in args.slot_counts:
            measure_slots(args, mongo_url, sshd, key, work, slots)
        print(f"done; {load_average()}")


if __name__ == "__main__":
    main()
