"""Import throughput: a hand-written loop versus a Connect merge import of the same file into a list.

    .venv/bin/python bench/import_throughput.py [--rows N] [--mongo-url URL]

Generates a CSV of N rows x 10 columns, puts it on a test sshd (OpenSSH, key auth), then on the same
MongoDB server measures
  (a) the baseline a user would hand-write: SFTP download, `csv.reader`, PyMongo `bulk_write` of
      unordered upserts (by e-mail) in batches of 1,000, sequential;
  (b) a Connect merge import of the same file into an equivalent list (match on EMAIL_ADDRESS_,
      insert on no match, RIID_ assignment, validation, rejects, progress), via the executor's code.
Each measurement runs in its own process, so its peak RSS is its own. Connect is also run at 5xN
to show that its memory stays flat. The database is the embedded server unless --mongo-url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
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
MAPPING = [("email", "EMAIL_ADDRESS_"), ("customer_id", "CUSTOMER_ID_"), ("first_name", "FIRST_NAME"),
           ("last_name", "LAST_NAME"), ("city", "CITY"), ("country", "COUNTRY"), ("mobile", "MOBILE_NUMBER_"),
           ("score", "SCORE"), ("birthday", "BIRTHDAY"), ("subscribed", "SUBSCRIBED")]  # fmt: skip
CITIES = ["Zürich", "Genève", "Basel", "Bern", "Lausanne", "Lugano", "Chur", "Sion"]


def generate(path: Path, rows: int, offset: int = 0) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(offset, offset + rows):
            writer.writerow([
                f"user{n}@example.com", f"C{n:09d}", f"First{n % 997}", f"Last{n % 1013}", CITIES[n % 8], "CH",
                f"+4179{n:07d}", n % 10_000, f"19{50 + n % 50}-{1 + n % 12:02d}-{1 + n % 28:02d}",
                "yes" if n % 3 else "no",
            ])  # fmt: skip


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- (a) the hand-written baseline ------------------------------------------------------------------


def baseline(args: argparse.Namespace) -> dict[str, Any]:
    import asyncssh
    from pymongo import MongoClient, UpdateOne

    local = Path(tempfile.mkdtemp()) / "download.csv"
    started = time.perf_counter()

    async def download() -> None:
        async with asyncssh.connect(
            "127.0.0.1", port=args.sshd_port, username=args.sshd_user, client_keys=[args.sshd_key],
            known_hosts=None, agent_path=None, config=None,
        ) as ssh, ssh.start_sftp_client() as sftp:  # fmt: skip
            await sftp.get(f"{args.sshd_root}/{args.remote}", str(local))

    asyncio.run(download())
    client: MongoClient[dict[str, Any]] = MongoClient(args.mongo_url)
    collection = client[args.database]["baseline"]
    collection.create_index("EMAIL_ADDRESS_", unique=True)
    batch: list[UpdateOne] = []
    count = 0
    with local.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            doc = dict(zip([f for _, f in MAPPING], row, strict=True))
            batch.append(UpdateOne({"EMAIL_ADDRESS_": doc["EMAIL_ADDRESS_"]}, {"$set": doc}, upsert=True))
            count += 1
            if len(batch) == 1000:
                collection.bulk_write(batch, ordered=False)
                batch = []
    if batch:
        collection.bulk_write(batch, ordered=False)
    elapsed = time.perf_counter() - started
    assert collection.count_documents({}) == count
    client.close()
    return {"rows": count, "seconds": elapsed, "peak_rss_mib": peak_rss_mib()}


# --- (b) Connect ------------------------------------------------------------------------------------


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
    from shared.catalog_records import LIST_SYSTEM_FIELDS
    from shared.contracts import RunFinished, RunRequested
    from shared.contracts.jobs import JobSnapshot
    from shared.contracts.runs import RunRequestedData, Trigger
    from shared.mongo import create_client
    from shared.secrets import SecretBox

    box = SecretBox("bench-secret-key-0123456789")
    private_key = Path(args.sshd_key).read_text()  # noqa: ASYNC240 (once, before the measurement)
    mongo = create_client(args.mongo_url)
    prefix = f"{args.database}_{args.label}"
    catalog, executor, audience = f"{prefix}_catalog", f"{prefix}_executor", f"{prefix}_audience"
    now = datetime.now(UTC)
    await mongo[catalog]["connections"].insert_one({
        "_id": 1, "kind": "sftp", "name": "bench", "host": "127.0.0.1", "port": args.sshd_port,
        "username": args.sshd_user, "private_key_encrypted": box.encrypt(private_key),
        "host_key": args.sshd_host_key, "base_dir": args.sshd_root, "created_at": now, "created_by": "bench",
    })  # fmt: skip
    fields = [f.model_dump() for f in LIST_SYSTEM_FIELDS] + USER_FIELDS
    await mongo[catalog]["tables"].insert_one(
        {"name": "people", "kind": "list", "fields": fields, "created_at": now, "created_by": "bench"}
    )
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
            retry_backoff=1, imports=ImportSettings(batch_size=1000, read_chunk_bytes=256 * 1024,
                                                     max_in_flight=args.in_flight),
        ),
        leases=MongoLeaseStore(mongo, executor, 30), writers=MongoTableWriters(mongo, executor, 30), catalog=MongoCatalogReader(mongo, catalog),
        store=MongoAudienceStore(mongo, audience), rejects=MongoRejectStore(mongo, executor),
        watermarks=MongoWatermarks(mongo, executor), publisher=Publisher(), secrets=box,
    )  # fmt: skip
    spec = {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": 1, "path": Path(args.remote).name},
        "mapping": [{"column": c, "field": f} for c, f in MAPPING],
        "target": {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]},
    }
    job = JobSnapshot.model_validate({"job_id": 1, "name": "bench", "job_type": "import", "spec": spec})
    request = RunRequested(source="bench", data=RunRequestedData(
        run_id="1.1", job=job, trigger=Trigger.ON_DEMAND, requested_by="bench", requested_at=now))  # fmt: skip
    started = time.perf_counter()
    await service.accept(request)
    await done.wait()
    elapsed = time.perf_counter() - started
    data = finished[0].data
    assert data.status.value == "succeeded", data
    assert await mongo[audience]["table_people"].count_documents({}) == data.counts.inserted
    await mongo.close()
    return {"rows": data.counts.read, "inserted": data.counts.inserted, "seconds": elapsed,
            "peak_rss_mib": peak_rss_mib()}  # fmt: skip


# --- orchestration ----------------------------------------------------------------------------------


def child(mode: str, args: argparse.Namespace, remote: str, label: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--remote", remote, "--label", label]
    for key in ("mongo_url", "sshd_port", "sshd_user", "sshd_key", "sshd_host_key", "sshd_root", "database",
                "in_flight"):  # fmt: skip
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    out = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--mongo-url", default=os.environ.get("MONGO_URL"))
    parser.add_argument("--in-flight", type=int, default=2, help="Connect's batches written at once")
    parser.add_argument("--skip-5x", action="store_true")
    for hidden in ("child", "remote", "label", "sshd-port", "sshd-user", "sshd-key", "sshd-host-key", "sshd-root",
                   "database"):  # fmt: skip
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
            n = args.rows
            generate(sshd.root / "people.csv", n)
            size = (sshd.root / "people.csv").stat().st_size
            print(f"file: {n} rows x {len(COLUMNS)} columns, {size / 1e6:.1f} MB; database {args.mongo_url}")
            base = child("baseline", args, "people.csv", "base")
            print(f"baseline  (csv.reader + bulk_write upserts x1000, sequential): {base['rows'] / base['seconds']:,.0f} rows/s"
                  f"  ({base['seconds']:.1f} s, peak RSS {base['peak_rss_mib']:.0f} MiB)")  # fmt: skip
            small = child("connect", args, "people.csv", "n")
            print(f"Connect   (merge into a list, N = {n}): {small['rows'] / small['seconds']:,.0f} rows/s"
                  f"  ({small['seconds']:.1f} s, peak RSS {small['peak_rss_mib']:.0f} MiB)")  # fmt: skip
            ratio = (small["rows"] / small["seconds"]) / (base["rows"] / base["seconds"])
            print(f"ratio Connect/baseline: {ratio:.2f}")
            if not args.skip_5x:
                generate(sshd.root / "people5.csv", 5 * n)
                large = child("connect", args, "people5.csv", "n5")
                growth = 100 * (large["peak_rss_mib"] / small["peak_rss_mib"] - 1)
                print(f"Connect   (N x 5 = {5 * n}): {large['rows'] / large['seconds']:,.0f} rows/s"
                      f"  ({large['seconds']:.1f} s, peak RSS {large['peak_rss_mib']:.0f} MiB)")  # fmt: skip
                print(f"peak RSS at N: {small['peak_rss_mib']:.0f} MiB; at 5xN: {large['peak_rss_mib']:.0f} MiB "
                      f"({growth:+.1f} %)")  # fmt: skip
    finally:
        if database:
            database.stop()


if __name__ == "__main__":
    main()
