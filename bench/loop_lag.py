"""Event-loop lag of the executor while one run does heavy work, and how late another run starts.

    .venv/bin/python bench/loop_lag.py [--scenario bomb|csv|both] [--csv-mib 100] [--mongo-url URL]

Starts sshd and the database (the embedded server unless --mongo-url or MONGO_URL is given), runs an
in-process executor (the integration-test harness) and a `LoopLagMonitor` on the same event loop, then
  bomb: a 1 MB gzip of 1 GB of zeros (written streaming) is imported; once it is being read, a small
        import is requested;
  csv:  a CSV file of --csv-mib MiB is merged into a custom table; once its header is read, a small
        import is requested.
Printed per scenario: the heavy run's outcome and duration, the delay from the small run's request to
its RunStarted, and the loop lag seen meanwhile (max, p99, samples).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.contracts import RunFinished, RunStarted  # noqa: E402
from shared.looplag import LoopLagMonitor  # noqa: E402
from shared.mongo import create_client  # noqa: E402
from shared.secrets import SecretBox  # noqa: E402
from shared.settings import CommonSettings  # noqa: E402
from tests.support.executor_harness import (  # noqa: E402
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)
from tests.support.servers import mongo_server, sshd_server  # noqa: E402

KEY = "bench-secret-key-0123456789"


def write_bomb(path: Path, gigabytes: int = 1) -> None:
    """A gzip of `gigabytes` GiB of zeros, compressed as it is written (1 MiB in memory at a time)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    with path.open("wb") as handle:
        for _ in range(gigabytes << 10):
            handle.write(packer.compress(zeros))
        handle.write(packer.flush())


def write_csv(path: Path, mib: int) -> int:
    """Contacts with a wide unmapped note column until the file holds `mib` MiB; returns the rows."""
    note = "n" * 180
    rows = size = 0
    with path.open("w", newline="") as handle:
        handle.write("id,email,points,note\n")
        while size < mib << 20:
            block = "".join(f"C{n:09d},u{n}@example.com,{n % 997},{note}\n" for n in range(rows, rows + 5000))
            handle.write(block)
            size, rows = size + len(block), rows + 5000
    return rows


def spec(path: str) -> dict[str, Any]:
    return import_spec(path, {"kind": "custom", "table": "contacts", "mode": "merge"}, CONTACT_MAPPING)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def started_after(h: Harness, run_id: str, requested: float, timeout: float = 600) -> float:
    async with asyncio.timeout(timeout):
        while not h.events.of(run_id, RunStarted):
            h.events.changed.clear()
            await h.events.changed.wait()
    return time.monotonic() - requested


async def scenario(h: Harness, heavy_path: str, wait_for_log: str, job_id: int) -> dict[str, Any]:
    samples: list[float] = []
    monitor = LoopLagMonitor(samples.append, interval=0.01)
    service = h.service()
    monitor.start()
    began = time.monotonic()
    heavy = h.request(spec(heavy_path), job_id=job_id)
    await service.accept(heavy)
    heavy_id = heavy.data.run_id
    async with asyncio.timeout(600):
        while not any(wait_for_log in line for line in h.events.logs(heavy_id)):
            h.events.changed.clear()
            await h.events.changed.wait()
    small = h.request(spec("small.csv"), job_id=job_id + 1)
    requested = time.monotonic()
    await service.accept(small)
    delay = await started_after(h, small.data.run_id, requested)
    finished: RunFinished = await h.finished(heavy_id, timeout=900)
    await h.finished(small.data.run_id, timeout=60)
    await monitor.stop()
    data = finished.data
    return {
        "heavy_status": data.status.value, "heavy_error": (data.error or "")[:120],
        "heavy_seconds": round(time.monotonic() - began, 2), "heavy_read": data.counts.read,
        "other_run_start_delay_s": round(delay, 3), "lag_max_s": round(max(samples, default=0), 3),
        "lag_p99_s": round(percentile(samples, 0.99), 3), "lag_samples": len(samples),
    }  # fmt: skip


async def bench(args: argparse.Namespace, mongo_url: str, sshd: Any) -> dict[str, Any]:
    settings = CommonSettings.model_validate(
        {"MONGO_URL": mongo_url, "CONNECT_DB_PREFIX": f"bench{os.getpid()}", "CONNECT_SECRET_KEY": KEY}
    )
    mongo = create_client(mongo_url)
    folder = f"looplag{os.getpid()}"
    (sshd.root / folder).mkdir()
    h = Harness(settings, mongo, sshd, folder, SecretBox(KEY))
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("small.csv", csv_text([["id", "email", "points"], ["S1", "s1@example.com", "1"]]))
    results: dict[str, Any] = {}
    try:
        if args.scenario in ("bomb", "both"):
            await asyncio.to_thread(write_bomb, h.root / "bomb.csv.gz")
            results["bomb"] = await scenario(h, "bomb.csv.gz", "file found", 1)
        if args.scenario in ("csv", "both"):
            rows = await asyncio.to_thread(write_csv, h.root / "big.csv", args.csv_mib)
            results["csv"] = {
                "mib": args.csv_mib,
                "rows": rows,
                **await scenario(h, "big.csv", "header read", 11),
            }
    finally:
        for service in h.services:
            await service.shutdown(grace=5)
        await mongo.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=("bomb", "csv", "both"), default="both")
    parser.add_argument("--csv-mib", type=int, default=100)
    parser.add_argument("--mongo-url", default=None)
    args = parser.parse_args()
    if args.mongo_url:
        os.environ["MONGO_URL"] = args.mongo_url
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "db").mkdir()
        with mongo_server(Path(tmp) / "db") as url, sshd_server(Path(tmp) / "sshd") as sshd:
            results = asyncio.run(bench(args, url, sshd))
    for name, figures in results.items():
        print(name, json.dumps(figures))


if __name__ == "__main__":
    main()
