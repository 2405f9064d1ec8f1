"""Every query and write of the run lease store and the table writer lock rides an index (issue #14): on the
embedded server a full scan of `run_leases` cost time in proportion to all runs ever held, so the database's CPU
per run grew round after round. The server reports each full scan (`shared/embedded_server.py`, SCAN_REPORT_ENV);
with thousands of finished leases stored, the lease's whole life - claims, a table held by another run, renewal,
result, take-over, the reaper's queries - scans nothing of that size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.executor.repository import MongoLeaseStore
from services.executor.table_writers import MongoTableWriters
from shared.contracts import RunRequested
from shared.embedded_server import SCAN_REPORT_ENV
from shared.mongo import EmbeddedMongo, MongoClient, create_client
from tests.support.executor_harness import CONTACT_MAPPING, import_spec, run_request

STORED = 3000  # finished leases of earlier runs
TABLE = "table_contacts"


@pytest.fixture
async def scanned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[MongoClient, Path]]:
    """A server of the test's own that reports its full scans to the file returned."""
    report = tmp_path / "scans.tsv"
    monkeypatch.setenv(SCAN_REPORT_ENV, str(report))
    server = EmbeddedMongo(tmp_path / "db")
    client = create_client(server.start())
    yield client, report
    await client.close()
    server.stop()


def request(job_id: int) -> RunRequested:
    return run_request(
        import_spec("in.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING), job_id=job_id
    )


def large_scans(report: Path) -> list[str]:
    return [line for line in report.read_text().splitlines() if int(line.split("\t")[2]) >= STORED]


async def test_a_leases_whole_life_scans_no_stored_lease(scanned: tuple[MongoClient, Path]) -> None:
    client, report = scanned
    leases, writers = MongoLeaseStore(client, "executor", 30), MongoTableWriters(client, "executor", 30)
    await leases.ensure_indexes()
    now = datetime.now(UTC)
    await leases.leases.insert_many([
        {"_id": f"{n}.1", "status": "finished", "owner": "old", "expires_at": now, "claimed_at": now,
         "phase": "attempting", "reported": True, "finished_at": now, "request": "{}", "log_seq": 0}
        for n in range(100_000, 100_000 + STORED)
    ])  # fmt: skip
    report.unlink(missing_ok=True)
    await client["executor"]["probe"].insert_one({"_id": 1})
    assert await client["executor"]["probe"].find_one({"x": 1}) is None  # a scan the report must show
    holder, waiter, waiting, stolen = request(1), request(2), request(3), request(4)

    assert (await leases.claim_and_start(holder, "exec-a", TABLE)) is not None
    behind = await leases.claim_and_start(waiter, "exec-b", TABLE)  # the table is held: claimed without it
    assert behind is not None and behind.table is None
    refused = await writers.acquire(TABLE, waiter.data.run_id, "exec-b")  # finds the holder, alive
    assert (refused.acquired, refused.holder) == (False, holder.data.run_id)
    assert (await leases.renew(holder.data.run_id, "exec-a")).writing == TABLE
    assert await leases.record_log_seq(holder.data.run_id, "exec-a", 3)
    await leases.save_checkpoint(holder.data.run_id, "exec-a", {"line": 1})
    assert await leases.finish(holder.data.run_id, "exec-a", "{}")
    assert (await writers.acquire(TABLE, waiter.data.run_id, "exec-b")).acquired
    await leases.mark_reported([holder.data.run_id])
    assert await leases.claim(waiting, "exec-c")  # no slot there: it waits
    assert await leases.claim(stolen, "exec-c")
    assert [r.data.run_id for r in await leases.steal_waiting("exec-d", 1)] == [waiting.data.run_id]
    assert (await leases.start(waiting.data.run_id, "exec-d")) is not None
    assert await leases.release(waiting.data.run_id, "exec-d", 0)
    assert [r.data.run_id for r in await leases.expired(10)] == [waiting.data.run_id]
    assert await leases.unreported(older_than_seconds=0) == []
    assert await leases.claim_and_start(holder, "exec-e") is None  # finished: never run again
    assert await leases.prune_finished() == 0  # the stored ones ended just now: within the retention

    assert "executor\tprobe\t1" in report.read_text().splitlines()
    assert large_scans(report) == []
