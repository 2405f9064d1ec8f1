"""Import throughput: Connect imports against a hand-written upsert loop on the same server, interleaved.

    .venv/bin/python bench/import_throughput.py [--rows N] [--rounds R] [--memory] [--mongo-url URL]

Generates a CSV of N rows x 10 columns (default 10,000; `--rows 50000` is the daily list synchronisation
of issue #14) and a second file with the same keys where every tenth row has changed. On a test sshd
(OpenSSH, key auth) and one MongoDB server, each round measures four cases, each against
  the baseline a user would hand-write: SFTP download, `csv.reader`, PyMongo `bulk_write` of unordered
  `UpdateOne(..., upsert=True)` by the key, in batches of 1,000 (Connect's batch size), sequential;
and Connect (the executor's code: validation, RIID_ assignment, rejects, progress, run records):
  list-first     the first load into an empty list (match on EMAIL_ADDRESS_, insert on no match);
  list-reimport  the changed file into that list: every key exists, 10 % of the rows differ;
  custom-first   the first merge into an empty custom table (primary key CUSTOMER_ID);
  custom-reimport the changed file merged into that table.
Every measurement is its own process (its peak RSS is its own); within a round the baseline and Connect
alternate which goes first. Printed per case: rows/s of each, the ratio Connect/baseline, and database
operations per 1,000 rows (the server's `serverStatus.opcounters`, diffed around the measurement). The
load average is printed before and after. `--memory` also loads 5 x N to show that memory stays flat.
`--profile` adds one round per case with the server's profiler on (level 2, on the database each side
writes): each side's commands by (operation, collection) with their count and server milliseconds —
for attribution only, the profiler's own writes slow that round.
The database is the embedded server unless --mongo-url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ["email", "customer_id", "first_name", "last_name", "city", "country", "mobile", "score", "birthday",
           "subscribed"]  # fmt: skip
USER_FIELDS = [
    {"name": "FIRST_NAME", "type": "string"}, {"name": "LAST_NAME", "type": "string"},
    {"name": "CITY", "type": "string"}, {"name": "COUNTRY", "type": "string", "max_length": 2},
    {"name": "SCORE", "type": "integer"}, {"name": "BIRTHDAY", "type": "date"},
    {"name": "SUBSCRIBED", "type": "boolean"},
]  # fmt: skip
LIST_MAPPING = [("email", "EMAIL_ADDRESS_"), ("customer_id", "CUSTOMER_ID_"), ("first_name", "FIRST_NAME"),
                ("last_name", "LAST_NAME"), ("city", "CITY"), ("country", "COUNTRY"),
                ("mobile", "MOBILE_NUMBER_"), ("score", "SCORE"), ("birthday", "BIRTHDAY"),
                ("subscribed", "SUBSCRIBED")]  # fmt: skip
CUSTOM_FIELDS = [{"name": "CUSTOMER_ID", "type": "string"}, {"name": "EMAIL", "type": "email"},
                 {"name": "MOBILE", "type": "phone"}, *USER_FIELDS]  # fmt: skip
CUSTOM_MAPPING = [(c, {"email": "EMAIL", "customer_id": "CUSTOMER_ID", "mobile": "MOBILE"}.get(c, f))
                  for c, f in LIST_MAPPING]  # fmt: skip
CASES = {  # case: (file, table kind, Connect run number, the key the baseline upserts by)
    "list-first": ("people.csv", "list", 1, "EMAIL_ADDRESS_"),
    "list-reimport": ("people-changed.csv", "list", 2, "EMAIL_ADDRESS_"),
    "custom-first": ("people.csv", "custom", 1, "CUSTOMER_ID"),
    "custom-reimport": ("people-changed.csv", "custom", 2, "CUSTOMER_ID"),
}
CITIES = ["Zürich", "Genève", "Basel", "Bern", "Lausanne", "Lugano", "Chur", "Sion"]
BATCH = 1000
OPS = ("insert", "query", "update", "delete", "getmore", "command")


def generate(path: Path, rows: int, *, changed_every: int = 0) -> None:
    """`changed_every` k > 0: every k-th row gets another city and score (its key stays)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(rows):
            changed = changed_every and n % changed_every == 0
            writer.writerow([
                f"user{n}@example.com", f"C{n:09d}", f"First{n % 997}", f"Last{n % 1013}",
                CITIES[(n + changed) % 8], "CH", f"+4179{n:07d}", (n + 7 * changed) % 10_000,
                f"19{50 + n % 50}-{1 + n % 12:02d}-{1 + n % 28:02d}", "yes" if n % 3 else "no",
            ])  # fmt: skip


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def opcounters(mongo: Any) -> dict[str, int]:
    status = await mongo.admin.command("serverStatus")
    return {name: int(status["opcounters"].get(name, 0)) for name in OPS}


def ops_between(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in OPS}


# --- the hand-written baseline ----------------------------------------------------------------------


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_baseline(args))


async def _baseline(args: argparse.Namespace) -> dict[str, Any]:
    import asyncssh
    from pymongo import AsyncMongoClient, UpdateOne

    remote, kind, _run, key = CASES[args.case]
    mapping = LIST_MAPPING if kind == "list" else CUSTOM_MAPPING
    local = Path(tempfile.mkdtemp()) / "download.csv"
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongo_url)
    collection = client[args.database][f"baseline_{kind}_{args.label}"]
    await _profile_on(client[args.database], args)
    before = await opcounters(client)
    started = time.perf_counter()
    async with asyncssh.connect(
        "127.0.0.1", port=args.sshd_port, username=args.sshd_user, client_keys=[args.sshd_key],
        known_hosts=None, agent_path=None, config=None,
    ) as ssh, ssh.start_sftp_client() as sftp:  # fmt: skip
        await sftp.get(f"{args.sshd_root}/{remote}", str(local))
    await collection.create_index(key, unique=True)
    batch: list[UpdateOne] = []
    count = 0
    with local.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            doc = dict(zip([f for _, f in mapping], row, strict=True))
            batch.append(UpdateOne({key: doc[key]}, {"$set": doc}, upsert=True))
            count += 1
            if len(batch) == BATCH:
                await collection.bulk_write(batch, ordered=False)
                batch = []
    if batch:
        await collection.bulk_write(batch, ordered=False)
    elapsed = time.perf_counter() - started
    ops = ops_between(before, await opcounters(client))
    assert await collection.count_documents({}) == count
    profile = await _profile_off(client[args.database], args)
    await client.close()
    return {"rows": count, "seconds": elapsed, "ops": ops, "peak_rss_mib": peak_rss_mib(), "profile": profile}


# --- Connect ----------------------------------------------------------------------------------------


def connect(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_connect(args))


async def _connect(args: argparse.Namespace) -> dict[str, Any]:
    from services.executor.audience import MongoAudienceStore
    from services.executor.importers.run import ImportSettings
    from services.executor.repository import (
        MongoCatalogReader,
        MongoLeaseStore,
        MongoRejectStore,
        MongoWatermarks,
    )
    from services.executor.service import ExecutionSettings, ExecutorService
    from services.executor.table_writers import MongoTableWriters
    from shared.contracts import RunFinished
    from shared.mongo import create_client
    from shared.secrets import SecretBox

    remote, kind, run, _key = CASES[args.case]
    box = SecretBox("bench-secret-key-0123456789")
    mongo = create_client(args.mongo_url)
    prefix = f"{args.database}_{args.label}"
    catalog, executor, audience = f"{prefix}_catalog", f"{prefix}_executor", f"{prefix}_audience"
    await _define(mongo[catalog], args, box)
    finished: list[RunFinished] = []
    done = asyncio.Event()

    class Publisher:
        async def publish(self, message: Any) -> None:
            if isinstance(message, RunFinished):
                finished.append(message)
                done.set()

    service = ExecutorService(
        ExecutionSettings(
            executor_id="bench", concurrency=1, lease_seconds=30, progress_interval=2, max_attempts=1,
            retry_backoff=1, imports=ImportSettings(batch_size=BATCH, read_chunk_bytes=256 * 1024,
                                                     max_in_flight=args.in_flight),
        ),
        leases=MongoLeaseStore(mongo, executor, 30), writers=MongoTableWriters(mongo, executor, 30),
        catalog=MongoCatalogReader(mongo, catalog), store=MongoAudienceStore(mongo, audience),
        rejects=MongoRejectStore(mongo, executor), watermarks=MongoWatermarks(mongo, executor),
        publisher=Publisher(), secrets=box,
    )  # fmt: skip
    await _profile_on(mongo[audience], args)
    before = await opcounters(mongo)
    started = time.perf_counter()
    await service.accept(_request(kind, remote, run))
    await done.wait()
    elapsed = time.perf_counter() - started
    ops = ops_between(before, await opcounters(mongo))
    data = finished[0].data
    assert data.status.value == "succeeded", data
    collection = "table_people" if kind == "list" else "table_accounts"
    assert await mongo[audience][collection].count_documents({}) == args.rows
    profile = await _profile_off(mongo[audience], args)
    await mongo.close()
    counts = data.counts
    return {"rows": counts.read, "inserted": counts.inserted, "updated": counts.updated,
            "unchanged": counts.unchanged, "seconds": elapsed, "ops": ops,
            "peak_rss_mib": peak_rss_mib(), "profile": profile}  # fmt: skip


async def _profile_on(db: Any, args: argparse.Namespace) -> None:
    """The server's profiler on for this database (`--profile`), into a profile collection large
    enough to keep every command of the measurement."""
    if not args.profile:
        return
    await db.command("profile", 0)
    await db["system.profile"].drop()
    await db.create_collection("system.profile", capped=True, size=512 * 1024 * 1024)
    await db.command("profile", 2, slowms=0)


async def _profile_off(db: Any, args: argparse.Namespace) -> dict[str, list[int]]:
    """(operation, command, collection): [count, server ms] of the profiled commands."""
    if not args.profile:
        return {}
    await db.command("profile", 0)
    found: dict[str, list[int]] = {}
    async for entry in db["system.profile"].find({}, {"op": 1, "command": 1, "millis": 1}):
        command = entry.get("command") or {}
        name = next(iter(command), "?")
        where = f"{entry.get('op')} {name} {command.get(name)}"
        found.setdefault(where, [0, 0])
        found[where][0] += 1
        found[where][1] += int(entry.get("millis", 0))
    await db["system.profile"].drop()
    return found


async def _define(catalog: Any, args: argparse.Namespace, box: Any) -> None:
    """The connection and both tables in the catalog (the first child of a label writes them)."""
    from shared.catalog_records import LIST_SYSTEM_FIELDS

    now = datetime.now(UTC)
    private_key = Path(args.sshd_key).read_text()  # noqa: ASYNC240 (once, before the measurement)
    connection = {
        "kind": "sftp", "name": "bench", "host": "127.0.0.1", "port": args.sshd_port,
        "username": args.sshd_user, "private_key_encrypted": box.encrypt(private_key),
        "host_key": args.sshd_host_key, "base_dir": args.sshd_root, "created_at": now, "created_by": "bench",
    }  # fmt: skip
    await catalog["connections"].replace_one({"_id": 1}, connection, upsert=True)
    tables = [
        {
            "name": "people",
            "kind": "list",
            "fields": [f.model_dump() for f in LIST_SYSTEM_FIELDS] + USER_FIELDS,
        },
        {"name": "accounts", "kind": "custom", "primary_key": ["CUSTOMER_ID"], "fields": CUSTOM_FIELDS},
    ]
    for table in tables:
        await catalog["tables"].replace_one(
            {"name": table["name"]}, {**table, "created_at": now, "created_by": "bench"}, upsert=True
        )


def _request(kind: str, remote: str, run: int) -> Any:
    from shared.contracts import RunRequested
    from shared.contracts.jobs import JobSnapshot
    from shared.contracts.runs import RunRequestedData, Trigger

    if kind == "list":
        target: dict[str, Any] = {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]}
        mapping, job_id = LIST_MAPPING, 1
    else:
        target, mapping, job_id = {"kind": "custom", "table": "accounts", "mode": "merge"}, CUSTOM_MAPPING, 2
    spec = {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": 1, "path": remote},
        "mapping": [{"column": c, "field": f} for c, f in mapping],
        "target": target,
    }
    job = JobSnapshot.model_validate({"job_id": job_id, "name": kind, "job_type": "import", "spec": spec})
    return RunRequested(source="bench", data=RunRequestedData(
        run_id=f"{job_id}.{run}", job=job, trigger=Trigger.ON_DEMAND, requested_by="bench",
        requested_at=datetime.now(UTC)))  # fmt: skip


# --- orchestration ----------------------------------------------------------------------------------


def child(mode: str, args: argparse.Namespace, case: str, label: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--case", case, "--label", label]
    for key in ("mongo_url", "sshd_port", "sshd_user", "sshd_key", "sshd_host_key", "sshd_root", "database",
                "in_flight", "rows"):  # fmt: skip
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    if getattr(args, "profile_child", False):
        command.append("--profile")
    out = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{mode} {case} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of the cases")
    parser.add_argument("--mongo-url", default=os.environ.get("MONGO_URL"))
    parser.add_argument("--in-flight", type=int, default=2, help="Connect's batches written at once")
    parser.add_argument("--memory", action="store_true", help="also load 5 x N: peak RSS stays flat")
    parser.add_argument("--profile", action="store_true", help="also a round per case with the profiler on")
    for hidden in ("child", "case", "label", "sshd-port", "sshd-user", "sshd-key", "sshd-host-key",
                   "sshd-root", "database"):  # fmt: skip
        parser.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = baseline(args) if args.child == "baseline" else connect(args)
        print(json.dumps(result))
        return
    run_bench(args)


def run_bench(args: argparse.Namespace) -> None:
    from shared.mongo import EmbeddedMongo
    from tests.support.servers import sshd_server

    work = Path(tempfile.mkdtemp(prefix="connect-bench-"))
    database = None
    if not args.mongo_url:
        database = EmbeddedMongo(work / "mongo")
        args.mongo_url = database.start()
    try:
        with sshd_server(work / "sshd") as sshd:
            key = work / "client_key"
            key.write_text(sshd.private_key)
            key.chmod(0o600)
            args.sshd_port, args.sshd_user, args.sshd_key = sshd.port, sshd.username, str(key)
            args.sshd_host_key, args.sshd_root = sshd.host_key, str(sshd.root)
            args.database = f"bench{os.getpid()}"
            generate(sshd.root / "people.csv", args.rows)
            generate(sshd.root / "people-changed.csv", args.rows, changed_every=10)
            size = (sshd.root / "people.csv").stat().st_size
            print(f"file: {args.rows} rows x {len(COLUMNS)} columns, {size / 1e6:.1f} MB; the re-import file "
                  f"changes every 10th row; database {args.mongo_url}")  # fmt: skip
            print(f"load average before: {_load()}")
            measure_rounds(args, [c for c in args.cases.split(",") if c])
            if args.profile:
                profile_round(args, [c for c in args.cases.split(",") if c])
            if args.memory:
                memory_check(args, sshd.root)
            print(f"load average after: {_load()}")
    finally:
        if database:
            database.stop()


def measure_rounds(args: argparse.Namespace, cases: list[str]) -> None:
    results: dict[str, dict[str, list[dict[str, Any]]]] = {c: {"baseline": [], "connect": []} for c in cases}
    for round_no in range(args.rounds):
        label = f"r{round_no}"
        for case in cases:  # in order: a re-import finds the table its first load filled
            order = ("baseline", "connect") if round_no % 2 == 0 else ("connect", "baseline")
            for mode in order:
                results[case][mode].append(child(mode, args, case, label))
            base, ours = results[case]["baseline"][-1], results[case]["connect"][-1]
            print(f"round {round_no + 1} {case:16} baseline {_rate(base):>7,.0f} rows/s  Connect "
                  f"{_rate(ours):>7,.0f} rows/s  ratio {_rate(ours) / _rate(base):.2f}  "
                  f"({_counts(ours)}; load {_load()})")  # fmt: skip
    print(
        "\ncase             baseline rows/s  Connect rows/s  ratio (median)  db ops per 1,000 rows: "
        "baseline | Connect"
    )
    for case in cases:
        bases, ourses = results[case]["baseline"], results[case]["connect"]
        ratio = statistics.median(_rate(o) / _rate(b) for o, b in zip(ourses, bases, strict=True))
        print(f"{case:16} {statistics.median(map(_rate, bases)):>15,.0f} "
              f"{statistics.median(map(_rate, ourses)):>15,.0f} {ratio:>15.2f}   "
              f"{_per_thousand(bases[-1])} | {_per_thousand(ourses[-1])}")  # fmt: skip


def profile_round(args: argparse.Namespace, cases: list[str]) -> None:
    """One more round with the profiler on: where each side's server time goes."""
    args.profile_child = True
    print("\nprofiled round (the profiler's writes slow it; for attribution only):")
    for case in cases:
        for mode in ("baseline", "connect"):
            result = child(mode, args, case, "prof")
            print(f"  {case} {mode}: {_rate(result):,.0f} rows/s, {result['seconds']:.1f} s")
            for where, (count, millis) in sorted(result["profile"].items(), key=lambda kv: -kv[1][1])[:6]:
                print(f"    {where:58} {count:6d} commands {millis:7d} ms")
    args.profile_child = False


def memory_check(args: argparse.Namespace, root: Path) -> None:
    small = child("connect", args, "list-first", "mem1")
    rows = args.rows
    generate(root / "people.csv", 5 * rows)
    args.rows = 5 * rows
    large = child("connect", args, "list-first", "mem5")
    args.rows = rows
    growth = 100 * (large["peak_rss_mib"] / small["peak_rss_mib"] - 1)
    print(f"peak RSS of a first load: {small['peak_rss_mib']:.0f} MiB at N, {large['peak_rss_mib']:.0f} MiB at "
          f"5 x N ({growth:+.1f} %); 5 x N at {_rate(large):,.0f} rows/s")  # fmt: skip


def _rate(result: dict[str, Any]) -> float:
    return float(result["rows"]) / float(result["seconds"])


def _counts(result: dict[str, Any]) -> str:
    return f"inserted {result['inserted']}, updated {result['updated']}, unchanged {result['unchanged']}"


def _per_thousand(result: dict[str, Any]) -> str:
    scale = 1000 / max(1, int(result["rows"]))
    ops = result["ops"]
    total = sum(ops.values()) * scale
    detail = " ".join(f"{name[:3]} {ops[name] * scale:.1f}" for name in OPS if ops[name])
    return f"{total:,.1f} ({detail})"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
