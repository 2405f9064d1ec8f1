"""Run-now latency: a burst of concurrent run-now POSTs, then sequential ones, through the four services.

    .venv/bin/python bench/run_now.py [--jobs 100] [--sequential 100] [--slots 2[,8]]

RabbitMQ at AMQP_URL (default localhost), MONGO_URL or the embedded server (started here), OpenSSH's
sshd (started here). Each job is an on-demand import of a 1-row CSV over SFTP (the unit of work of
bench/run_overhead.py); one executor with EXECUTOR_CONCURRENCY = slots.
  1. burst: one run-now POST for each of --jobs distinct jobs, all at once: the time until every POST
     is answered, and each answer's latency; then waits until every run is recorded finished.
  2. sequential: one POST after the other (each after the previous answer) on --sequential distinct
     jobs: POST latency p50/p99; then waits until every run is recorded finished. The runs queue for
     the executor's slots meanwhile, so their start latency includes that wait.
  2b. isolated: --isolated POSTs, each waited for until its run finished: the start latency of a run
     that finds a free slot (what the requested -> started goal is about).
  3. where a POST's answer time goes: POST sent -> `requested_at` (catalog, broker, the scheduler's
     queue) and `requested_at` -> answer (the scheduler's allocation and reply, the catalog's answer).
  4. requested -> started for the runs of each phase, from the logsink's run records (`requested_at`,
     stamped by the scheduler when it allocates the run, to `started_at`, stamped by the executor), and
     from the POST being sent to `started_at` (the same machine's clock).
Figures are printed against the goals (all answered within 2 s; POST p99 <= 250 ms; requested ->
started p99 <= 250 ms) as measured/goal ratios: <= 1.00 meets the goal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (
    TERMINAL,
    ConnectSystem,
    bench_servers,
    connect_system,
    create_import_jobs,
    load_average,
    percentile,
    wait_until_counted,
    write_row_files,
)

ALL_ANSWERED_GOAL = 2.0
P99_GOAL = 0.250


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100, help="Concurrent run-now POSTs (distinct jobs).")
    parser.add_argument("--sequential", type=int, default=100, help="Sequential POSTs (distinct jobs).")
    parser.add_argument(
        "--isolated", type=int, default=50, help="Run-now POSTs each waited for until its run finished."
    )
    parser.add_argument(
        "--slots", default="2", help="Comma-separated EXECUTOR_CONCURRENCY values to measure."
    )
    parser.add_argument("--timeout", type=float, default=600, help="Seconds to wait for a phase's runs.")
    parser.add_argument(
        "--request-timeout", type=float, default=None,
        help="CATALOG_RUN_REQUEST_TIMEOUT (default: the catalog's own; a POST waiting longer is answered 503).",
    )  # fmt: skip
    parser.add_argument("--mongo-url", default=os.environ.get("MONGO_URL"))
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    )
    args = parser.parse_args(argv)
    args.slot_counts = [int(s) for s in str(args.slots).split(",") if s.strip()]
    if not args.slot_counts or min(args.jobs, args.sequential, args.isolated, *args.slot_counts) < 1:
        parser.error("--jobs, --sequential, --isolated and every --slots value must be at least 1")
    return args


@dataclass
class Posted:
    """One answered run-now POST: the run id when accepted (202), else the answer's status."""

    run_id: str | None
    status: int
    sent_at: datetime
    seconds: float


async def timed_run_now(api: httpx.AsyncClient, job: int) -> Posted:
    sent_at, started = datetime.now(UTC), time.perf_counter()
    response = await api.post(f"/jobs/{job}/run")
    seconds = time.perf_counter() - started
    run_id = str(response.json()["run_id"]) if response.status_code == 202 else None
    return Posted(run_id, response.status_code, sent_at, seconds)


def accepted(posted: list[Posted]) -> list[Posted]:
    return [p for p in posted if p.run_id is not None]


async def burst(system: ConnectSystem, jobs: list[int]) -> tuple[float, list[Posted]]:
    """(seconds until every POST was answered, the answers): one POST per job, all at once."""
    async with await system.api() as api:
        started = time.perf_counter()
        posted = await asyncio.gather(*(timed_run_now(api, job) for job in jobs))
        return time.perf_counter() - started, list(posted)


async def sequential(system: ConnectSystem, jobs: list[int]) -> list[Posted]:
    async with await system.api() as api:
        return [await timed_run_now(api, job) for job in jobs]


def alone_run(system: ConnectSystem, records: RunRecords, job: int, timeout: float) -> Posted:
    """One run-now on an otherwise idle system, waited for until it finished."""
    posted = asyncio.run(sequential(system, [job]))
    records.wait_finished(posted, timeout)
    return posted[0]


class RunRecords:
    """The logsink's run records, read directly (the bench's reads are not what it measures here)."""

    def __init__(self, system: ConnectSystem, mongo_url: str) -> None:
        self.client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, tz_aware=True)
        database, collection = system.runs_collection
        self.runs = self.client[database][collection]

    def wait_finished(self, posted: list[Posted], timeout: float) -> None:
        ids = [p.run_id for p in accepted(posted)]
        wait_until_counted(
            self.runs, {"_id": {"$in": ids}, "status": {"$in": list(TERMINAL)}}, len(ids), timeout, 0.2
        )
        failed = self.runs.count_documents({"_id": {"$in": ids}, "status": {"$ne": "succeeded"}})
        if failed:
            raise RuntimeError(f"{failed} of {len(ids)} runs did not succeed")

    def start_latencies(self, posted: list[Posted]) -> tuple[list[float], list[float]]:
        """(requested_at -> started_at, POST sent -> started_at) in seconds, one per run."""
        sent = {p.run_id: p.sent_at for p in accepted(posted)}
        recorded, from_post = [], []
        for doc in self.runs.find({"_id": {"$in": list(sent)}}, {"requested_at": 1, "started_at": 1}):
            recorded.append((doc["started_at"] - doc["requested_at"]).total_seconds())
            from_post.append((doc["started_at"] - sent[doc["_id"]]).total_seconds())
        return recorded, from_post

    def answer_split(self, posted: list[Posted]) -> tuple[list[float], list[float]]:
        """(POST sent -> requested_at, requested_at -> answer received) in seconds, one per accepted POST:
        the catalog and the broker before the scheduler took the command, then the scheduler's
        allocation, its reply and the catalog's answer after it."""
        sent = {p.run_id: p for p in accepted(posted)}
        before, after = [], []
        for doc in self.runs.find({"_id": {"$in": list(sent)}}, {"requested_at": 1}):
            p = sent[doc["_id"]]
            before.append((doc["requested_at"] - p.sent_at).total_seconds())
            after.append(p.seconds - before[-1])
        return before, after


def ratio(value: float, goal: float) -> str:
    return f"{value / goal:.2f}x of the goal ({'met' if value <= goal else 'not met'})"


def quantiles(values: list[float]) -> str:
    return f"p50 {1000 * percentile(values, 50):.0f} ms, p99 {1000 * percentile(values, 99):.0f} ms"


def report_phase(name: str, posted: list[Posted], records: RunRecords) -> None:
    latencies = [p.seconds for p in posted]
    recorded, from_post = records.start_latencies(posted)
    refused = Counter(p.status for p in posted if p.run_id is None)
    print(f"  {name}: {len(accepted(posted))} of {len(posted)} POSTs accepted (202)"
          + (f"; refused: {dict(refused)}" if refused else ""))  # fmt: skip
    print(f"  {name}: POST latency {quantiles(latencies)}  p99 {ratio(percentile(latencies, 99), P99_GOAL)}")
    print(
        f"  {name}: requested -> started {quantiles(recorded)}  p99 {ratio(percentile(recorded, 99), P99_GOAL)}"
    )
    print(f"  {name}: POST sent -> started {quantiles(from_post)}", flush=True)
    before, after = records.answer_split(posted)
    print(f"  {name}: POST sent -> scheduler took it (requested_at) {quantiles(before)}; "
          f"-> answer received {quantiles(after)}", flush=True)  # fmt: skip


def measure(args: argparse.Namespace, mongo_url: str, sshd: Any, slots: int) -> None:
    count = max(args.jobs, args.sequential, args.isolated)
    env = {"EXECUTOR_CONCURRENCY": str(slots)}
    if args.request_timeout is not None:
        env["CATALOG_RUN_REQUEST_TIMEOUT"] = str(args.request_timeout)
    with connect_system(args.amqp_url, mongo_url, "benchnow", **env) as system:
        jobs = asyncio.run(_jobs(system, sshd, count + 1))
        warm, jobs = jobs[0], jobs[1:]
        records = RunRecords(system, mongo_url)
        warm_up = asyncio.run(sequential(system, [warm]))
        if not accepted(warm_up):
            raise RuntimeError(f"the warm-up run-now was refused: {warm_up[0].status}")
        records.wait_finished(warm_up, args.timeout)  # start-up costs stay out of the figures
        seconds, posted = asyncio.run(burst(system, jobs[: args.jobs]))
        print(f"slots {slots}: {args.jobs} concurrent run-now POSTs all answered in {seconds:.2f} s, "
              f"{ratio(seconds, ALL_ANSWERED_GOAL)}; {load_average()}", flush=True)  # fmt: skip
        if len(accepted(posted)) < len(posted):
            print("  (a refused POST counts as answered when its answer came; it started nothing)")
        records.wait_finished(posted, args.timeout)
        report_phase("burst", posted, records)
        one_by_one = asyncio.run(sequential(system, jobs[: args.sequential]))
        records.wait_finished(one_by_one, args.timeout)
        report_phase(f"sequential ({args.sequential})", one_by_one, records)
        alone = [alone_run(system, records, job, args.timeout) for job in jobs[: args.isolated]]
        report_phase(f"isolated ({args.isolated})", alone, records)
        print(f"  {load_average()}", flush=True)
        records.client.close()


async def _jobs(system: ConnectSystem, sshd: Any, count: int) -> list[int]:
    async with await system.api() as api:
        return await create_import_jobs(api, sshd, count)


def main() -> None:
    args = parse()
    work = Path(tempfile.mkdtemp(prefix="bench-run-now-"))
    with bench_servers(work, args.mongo_url) as (mongo_url, sshd):
        write_row_files(sshd.root, max(args.jobs, args.sequential, args.isolated) + 1)
        print(f"run now: {args.jobs} concurrent and {args.sequential} sequential POSTs, slots {args.slot_counts}; "
              f"database {mongo_url}; {load_average()}", flush=True)  # fmt: skip
        for slots in args.slot_counts:
            measure(args, mongo_url, sshd, slots)


if __name__ == "__main__":
    main()
