"""The executor's event loop is never held by one run's CPU work (issue #12, defect 4 and the budget).

The harness runs the executor in the test's own event loop, so a held loop shows up directly: in the
delay of another run's start and in the loop-lag histogram observed meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from shared.contracts import RunFinished, RunStarted
from shared.contracts.runs import RunStatus
from shared.looplag import LoopLagMonitor
from shared.metrics import create_metrics
from tests.conftest import DEEP
from tests.integration.test_import_partner_feed import delivery as feed_delivery
from tests.integration.test_import_partner_feed import setup as feed_setup
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)

ONE_GIB = 1024  # MiB


def write_zero_bomb(path: Path, mib: int = ONE_GIB) -> int:
    """A gzip file of `mib` MiB of zeros (~1 KB per MiB), streamed: the same deflate block repeated."""
    block = bytes(1 << 20)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate inside our gzip frame
    first = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(block) + packer.flush(zlib.Z_FULL_FLUSH)  # every further MiB: these bytes
    crc = zlib.crc32(block)
    with path.open("wb") as handle:
        handle.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first)
        for _ in range(mib - 1):
            handle.write(again)
            crc = zlib.crc32(block, crc)
        handle.write(packer.flush() + struct.pack("<II", crc, (mib << 20) & 0xFFFFFFFF))
        return handle.tell()


def lying_zip(size: int, declared: int) -> bytes:
    """A zip of `size` zeros whose headers declare `declared` bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.csv", b"id,email,points\n" + bytes(size))
    data = bytearray(buffer.getvalue())
    real = struct.pack("<I", size + 16)
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    assert data[local + 22 : local + 26] == real and data[central + 24 : central + 28] == real
    data[local + 22 : local + 26] = data[central + 24 : central + 28] = struct.pack("<I", declared)
    return bytes(data)


def spec(path: str) -> dict[str, object]:
    return import_spec(path, {"kind": "custom", "table": "contacts", "mode": "merge"}, CONTACT_MAPPING)


async def contacts(h: Harness) -> None:
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("small.csv", csv_text([["id", "email", "points"], ["S1", "s1@example.com", "1"]]))


class LagWatch:
    """The service's loop-lag monitor on the test's loop, observing into a real histogram."""

    def __init__(self) -> None:
        self.metrics = create_metrics("executor")
        self.monitor = LoopLagMonitor(self.metrics.event_loop_lag_seconds.labels("executor").observe)

    def sample(self, suffix: str, **labels: str) -> float:
        name = f"connect_event_loop_lag_seconds_{suffix}"
        value = self.metrics.registry.get_sample_value(name, {"service": "executor", **labels})
        return value or 0.0

    def lags_of_a_second_or_more(self) -> float:
        return self.sample("count") - self.sample("bucket", le="1.0")


async def run_beside(h: Harness, heavy: str, started: Callable[[str], bool]) -> tuple[float, str, LagWatch]:
    """Start an import of `heavy`; once `started(run_id)`, request a small one: its start delay."""
    watch = LagWatch()
    watch.monitor.start()
    service = h.service()
    request = h.request(spec(heavy))
    await service.accept(request)
    heavy_id = request.data.run_id
    await h.until(lambda: started(heavy_id), timeout=60)
    small = h.request(spec("small.csv"))
    requested = time.monotonic()
    await service.accept(small)
    await h.until(lambda: bool(h.events.of(small.data.run_id, RunStarted)), timeout=60)
    delay = time.monotonic() - requested
    assert (await h.finished(small.data.run_id, timeout=60)).data.status == RunStatus.SUCCEEDED
    return delay, heavy_id, watch


async def test_a_gzip_bomb_fails_within_seconds_while_another_run_starts_at_once(harness: Harness) -> None:
    h = harness
    await contacts(h)
    size = await asyncio.to_thread(write_zero_bomb, h.root / "bomb.csv.gz")
    assert size < 1_200_000  # 1 GiB of zeros in ~1 MB
    began = time.monotonic()
    delay, bomb_id, watch = await run_beside(
        h, "bomb.csv.gz", lambda run_id: any("file found" in line for line in h.events.logs(run_id))
    )
    finished = await h.finished(bomb_id, timeout=60)
    elapsed = time.monotonic() - began
    await watch.monitor.stop()
    assert finished.data.status == RunStatus.FAILED
    assert "bomb.csv.gz decompresses beyond the allowed ratio (200:1)" in (finished.data.error or "")
    assert finished.data.counts.inserted == finished.data.counts.updated == 0
    assert elapsed < 10, f"the bomb took {elapsed:.1f}s to fail"
    assert delay < 1.0, f"the other run started {delay:.2f}s after its request"
    assert watch.sample("count") > 0
    assert watch.lags_of_a_second_or_more() == 0, f"loop held up to {watch.monitor.max_lag:.2f}s"


async def test_a_line_without_end_fails_the_run_naming_the_line(harness: Harness) -> None:
    h = harness
    await contacts(h)
    # 5 MiB after the header without a line end: more than one record may hold (4 MiB by default).
    h.write("long.csv", b"id,email,points\nC1,a@x.io,1\n" + b"x" * (5 << 20))
    run = await h.run(spec("long.csv"))
    assert run.data.status == RunStatus.FAILED
    assert run.data.error == (
        "the record at line 3 is longer than 4,194,304 characters (no line end, or an unclosed quote?)"
    )
    assert await h.rows("contacts", "customer_id") == []


async def test_a_zip_whose_header_lies_about_its_size_fails_as_a_bad_file(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("liar.csv.zip", lying_zip(8 << 20, declared=4096))
    run = await h.run(spec("liar.csv.zip"))
    assert run.data.status == RunStatus.FAILED
    assert (run.data.error or "").startswith("liar.csv.zip cannot be unpacked: "), run.data.error
    h.write("bomb.csv.zip", lying_zip(64 << 20, declared=64 << 20))  # honest header, 1000:1
    run = await h.run(spec("bomb.csv.zip"))
    assert run.data.status == RunStatus.FAILED
    assert run.data.error == "bomb.csv.zip decompresses beyond the allowed ratio (200:1)"


async def test_a_bomb_in_a_partner_feed_fails_while_its_md5_and_counts_are_checked(harness: Harness) -> None:
    h = harness
    spec_ = await feed_setup(h)
    feed_delivery(h)  # a valid delivery, whose hit-data file is then replaced by a bomb
    hits = h.root / "feeds/01-shop_2024-01-01.tsv.gz"
    size = await asyncio.to_thread(write_zero_bomb, hits)
    digest = await asyncio.to_thread(lambda: hashlib.md5(hits.read_bytes()).hexdigest())
    manifest = h.root / "feeds/shop_2024-01-01.txt"
    text = manifest.read_text().split("Data-File:")[0]
    manifest.write_text(
        text + f"Data-File: 01-shop_2024-01-01.tsv.gz\n\tMD5-Digest: {digest}\n\tFile-Size: {size}\n"
    )
    began = time.monotonic()
    run = await h.run(spec_, timeout=60)
    assert run.data.status == RunStatus.FAILED
    assert run.data.error == "01-shop_2024-01-01.tsv.gz decompresses beyond the allowed ratio (200:1)"
    assert time.monotonic() - began < 10


def write_wide_csv(path: Path, mib: int) -> int:
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


async def test_while_a_large_file_loads_another_run_starts_at_once(harness: Harness) -> None:
    """100 MB in the deep run (CONNECT_DEEP=1); a few MiB in the suite, to keep it quick."""
    h = harness
    await contacts(h)
    rows = await asyncio.to_thread(write_wide_csv, h.root / "big.csv", 100 if DEEP else 2)
    delay, big_id, watch = await run_beside(
        h, "big.csv", lambda run_id: any("header read" in line for line in h.events.logs(run_id))
    )
    finished = await h.finished(big_id, timeout=1800)
    await watch.monitor.stop()
    assert finished.data.status == RunStatus.SUCCEEDED, finished.data.error
    assert finished.data.counts.read == finished.data.counts.inserted == rows
    # Not queued behind the load: the small run started while the large one was still loading (the time it
    # took to start is the database's under the load's writes, printed for who reads the log), and the
    # event loop was never held for a second.
    order = [(m.data.run_id, type(m)) for m in h.events.messages]
    small_started = next(
        i for i, (run_id, kind) in enumerate(order) if run_id != big_id and kind is RunStarted
    )
    assert small_started < order.index((big_id, RunFinished)), "the other run waited for the large one"
    print(f"the other run started {delay:.2f}s after its request")
    assert watch.lags_of_a_second_or_more() == 0, f"loop held up to {watch.monitor.max_lag:.2f}s"
