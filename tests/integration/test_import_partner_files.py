"""Files as partners deliver them (issue #17), over real sshd through the executor: dated paths in the job's
zone, late files (`if_missing`), empty and stale files, archive or delete after the import, and a crash
between the load and the move that neither loses the file nor imports it twice."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.executor.importers import run as import_run
from services.executor.service import ExecutorService
from shared.contracts import RunRequested
from shared.contracts.jobs import JobSnapshot, JobType
from shared.contracts.runs import RunRequestedData, RunStatus, Trigger
from tests.support.executor_harness import CONTACT_FIELDS, CONTACT_MAPPING, Harness, csv_text, import_spec

HEADER = ["id", "email", "points"]


def rows_of(*ids: str) -> str:
    return csv_text([HEADER, *[[i, f"{i.lower()}@x.io", "1"] for i in ids]])


def spec(path: str, mode: str = "merge", **source: Any) -> dict[str, Any]:
    return import_spec(
        path, {"kind": "custom", "table": "contacts", "mode": mode}, CONTACT_MAPPING, source=source
    )


async def contacts(h: Harness) -> None:
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))


async def ids(h: Harness) -> list[str]:
    return [r["customer_id"] for r in await h.rows("contacts", "customer_id")]


def request(
    spec_: dict[str, Any],
    *,
    job_id: int,
    slot: datetime | None = None,
    zone: str | None = None,
    trigger: Trigger = Trigger.ON_DEMAND,
) -> RunRequested:
    schedule: dict[str, Any] = {"type": "on_demand"}
    if zone is not None:
        schedule = {"type": "recurring", "rule": {"kind": "daily", "at": "08:30"}, "timezone": zone}
    job = JobSnapshot.model_validate(
        {
            "job_id": job_id,
            "name": f"job {job_id}",
            "job_type": JobType.IMPORT,
            "spec": spec_,
            "schedule": schedule,
        }
    )
    data = RunRequestedData(run_id=f"{job_id}.1", job=job, trigger=trigger, requested_by="test",
                            requested_at=datetime.now(UTC), slot=slot)  # fmt: skip
    return RunRequested(source="test", data=data)


async def run(h: Harness, req: RunRequested, service: ExecutorService | None = None) -> Any:
    await (service or h.service()).accept(req)
    return (await h.finished(req.data.run_id)).data


def short_minutes(h: Harness, seconds: float) -> ExecutorService:
    """An executor whose `if_missing: wait` minute lasts `seconds` (the wait logic is the same)."""
    service = h.service()
    service.settings = replace(
        service.settings, imports=replace(service.settings.imports, wait_minute_seconds=seconds)
    )
    return service


def age(h: Harness, relative: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(h.root / relative, (then, then))


# --- dated paths ----------------------------------------------------------------------------------


async def test_a_dated_path_reads_the_slots_date_in_the_jobs_zone(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("in/c_20261207.csv", rows_of("UTCDAY"))
    h.write("in/c_20261208.csv", rows_of("TOKYODAY"))
    slot = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)  # 08:30 on the 8th in Tokyo
    done = await run(h, request(spec("in/c_{date}.csv"), job_id=701, slot=slot, zone="Asia/Tokyo"))
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert await ids(h) == ["TOKYODAY"]
    assert "reading in/c_20261208.csv (the run's date: 2026-12-08 08:30 Asia/Tokyo)" in h.events.logs("701.1")
    # Run now: the request time, in UTC for a job without a zone; an offset moves the day.
    yesterday = datetime.fromtimestamp(time.time() - 86400, UTC).strftime("%Y-%m-%d")
    h.write(f"in/d_{yesterday}.csv", rows_of("YESTERDAY"))
    now = await run(h, request(spec("in/d_{date-1d:%Y-%m-%d}.csv"), job_id=702))
    assert now.status == RunStatus.SUCCEEDED, now.error
    assert "YESTERDAY" in await ids(h)


# --- if_missing -----------------------------------------------------------------------------------


async def test_a_missing_file_fails_by_default_as_before(harness: Harness) -> None:
    h = harness
    await contacts(h)
    done = await run(
        h, request(spec("in/c_{date}.csv"), job_id=711, slot=datetime(2026, 12, 7, 9, tzinfo=UTC))
    )
    assert done.status == RunStatus.FAILED
    assert done.error == "file in/c_20261207.csv: not found"


async def test_wait_imports_a_file_that_appears_during_the_wait(harness: Harness) -> None:
    h = harness
    await contacts(h)
    req = request(spec("in/c_{date}.csv", if_missing="wait", wait_minutes=30), job_id=712,
                  slot=datetime(2026, 12, 7, 9, tzinfo=UTC))  # fmt: skip
    await short_minutes(h, 1.0).accept(req)
    await h.until(lambda: "waiting for in/c_20261207.csv (0 of 30 min)" in h.events.logs("712.1"))
    h.write("in/c_20261207.csv", rows_of("LATE"))
    done = (await h.finished("712.1")).data
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert await ids(h) == ["LATE"]
    assert any(line.startswith("in/c_20261207.csv appeared after") for line in h.events.logs("712.1"))


async def test_wait_fails_when_the_file_never_appears_and_tells_the_minutes(harness: Harness) -> None:
    h = harness
    await contacts(h)
    req = request(spec("in/c_{date}.csv", if_missing="wait", wait_minutes=2), job_id=713,
                  slot=datetime(2026, 12, 7, 9, tzinfo=UTC))  # fmt: skip
    done = await run(h, req, short_minutes(h, 0.4))
    assert done.status == RunStatus.FAILED
    assert done.error == "in/c_20261207.csv did not appear within 2 min (if_missing: wait)"
    logs = h.events.logs("713.1")
    assert "waiting for in/c_20261207.csv (0 of 2 min)" in logs
    assert "waiting for in/c_20261207.csv (1 of 2 min)" in logs


async def test_a_stop_ends_the_wait(harness: Harness) -> None:
    h = harness
    await contacts(h)
    service = short_minutes(h, 60.0)
    req = request(spec("in/c_{date}.csv", if_missing="wait", wait_minutes=600), job_id=714)
    await service.accept(req)
    await h.until(lambda: any(line.startswith("waiting for") for line in h.events.logs("714.1")))
    assert service.request_stop("714.1")
    done = (await h.finished("714.1")).data
    assert done.status == RunStatus.STOPPED


async def test_the_jobs_max_duration_ends_the_wait(harness: Harness) -> None:
    h = harness
    await contacts(h)
    spec_ = {**spec("in/c_{date}.csv", if_missing="wait", wait_minutes=600), "max_duration": "PT1S"}
    done = await run(h, request(spec_, job_id=717), short_minutes(h, 60.0))
    assert (done.status, done.error, done.timed_out) == (RunStatus.FAILED, "timed out after PT1S", True)


async def test_newest_takes_the_most_recent_file_of_any_date(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("in/c_20261201.csv", rows_of("FIRST"))
    h.write("in/c_20261203.csv", rows_of("THIRD"))
    h.write("in/c_20261202.csv", rows_of("SECOND"))
    h.write("in/c_latest.csv", rows_of("NOTADATE"))  # not a date where the token is: never taken
    age(h, "in/c_20261201.csv", 7200)
    age(h, "in/c_20261202.csv", 3600)
    age(h, "in/c_20261203.csv", 1800)
    req = request(
        spec("in/c_{date}.csv", if_missing="newest"), job_id=715, slot=datetime(2026, 12, 7, 9, tzinfo=UTC)
    )
    done = await run(h, req)
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert await ids(h) == ["THIRD"]
    assert any(
        line.startswith("in/c_20261207.csv is missing: taking the newest file of any date, in/c_20261203.csv")
        for line in h.events.logs("715.1")
    )
    # The dated file, when there, is taken whatever the others' times.
    h.write("in/c_20261208.csv", rows_of("DATED"))
    age(h, "in/c_20261208.csv", 86400)
    dated = await run(h, request(spec("in/c_{date}.csv", if_missing="newest"), job_id=716,
                                 slot=datetime(2026, 12, 8, 9, tzinfo=UTC)))  # fmt: skip
    assert dated.status == RunStatus.SUCCEEDED and "DATED" in await ids(h)


# --- empty and stale files ------------------------------------------------------------------------


@pytest.mark.parametrize(("on_empty", "status"), [("succeed", RunStatus.SUCCEEDED), ("skip", RunStatus.SKIPPED),
                                                  ("fail", RunStatus.FAILED)])  # fmt: skip
async def test_a_header_only_file(harness: Harness, on_empty: str, status: RunStatus) -> None:
    h = harness
    await contacts(h)
    h.write("full.csv", rows_of("KEPT"))
    assert (await run(h, request(spec("full.csv"), job_id=720))).status == RunStatus.SUCCEEDED
    h.write("empty.csv", csv_text([HEADER]))
    job_id = {"succeed": 721, "skip": 722, "fail": 723}[on_empty]
    done = await run(h, request(spec("empty.csv", "overwrite", on_empty=on_empty), job_id=job_id))
    assert done.status == status, done.error
    assert done.counts.read == 0
    if on_empty == "fail":
        assert done.error == "empty.csv holds no data rows (on_empty: fail)"
        assert await ids(h) == ["KEPT"]
    if on_empty == "skip":
        assert done.error is None
        assert await ids(h) == ["KEPT"]  # the overwrite left the table as it was
        assert any("the run is skipped, no table touched" in line for line in h.events.logs(f"{job_id}.1"))
    if on_empty == "succeed":
        assert await ids(h) == []  # as before: an overwrite with an empty file empties the table


async def test_a_stale_file_fails_naming_its_time(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("old.csv", rows_of("OLD"))
    then = time.time() - 3 * 3600
    os.utime(h.root / "old.csv", (then, then))
    done = await run(h, request(spec("old.csv", max_age_hours=2), job_id=730))
    assert done.status == RunStatus.FAILED
    shown = datetime.fromtimestamp(int(then), UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert done.error == f"old.csv is stale: last modified {shown} UTC, more than 2 h ago (max_age_hours)"
    assert await ids(h) == []
    fresh = await run(h, request(spec("old.csv", max_age_hours=4), job_id=731))
    assert fresh.status == RunStatus.SUCCEEDED


# --- after the import -----------------------------------------------------------------------------


async def test_archive_moves_the_file_and_its_companions_with_the_run_id(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("in/c_20261207.csv", rows_of("A", "B"))
    h.write("in/c_20261207.csv.ready", "")
    h.write("in/c_20261207.csv.count", "2\n")
    options = {
        "after_import": "archive",
        "archive_dir": "archive",
        "ready_file": "required",
        "count_file": True,
    }
    slot = datetime(2026, 12, 7, 9, tzinfo=UTC)
    done = await run(h, request(spec("in/c_{date}.csv", **options), job_id=12, slot=slot))
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert sorted(p.name for p in (h.root / "in").iterdir()) == []
    assert sorted(p.name for p in (h.root / "archive").iterdir()) == [
        "c_20261207.12.1.csv", "c_20261207.12.1.csv.count", "c_20261207.12.1.csv.ready"
    ]  # fmt: skip
    assert "in/c_20261207.csv archived as archive/c_20261207.12.1.csv" in h.events.logs("12.1")


async def test_a_failed_run_leaves_the_file_in_place(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("in/bad.csv", csv_text([["id", "mail", "points"], ["A", "a@x.io", "1"]]))
    done = await run(
        h, request(spec("in/bad.csv", after_import="archive", archive_dir="archive"), job_id=740)
    )
    assert done.status == RunStatus.FAILED
    assert (h.root / "in/bad.csv").exists() and not (h.root / "archive").exists()


async def test_delete_removes_the_file_after_a_partial_run(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("in/d.csv", csv_text([HEADER, ["A", "a@x.io", "1"], ["B", "not-an-email", "2"]]))
    done = await run(h, request(spec("in/d.csv", after_import="delete"), job_id=741))
    assert done.status == RunStatus.PARTIAL, done.error
    assert await ids(h) == ["A"]
    assert not (h.root / "in/d.csv").exists()
    assert (h.root / "in/d.csv.741.1.rejects.csv").exists()  # the rejects file is not the file read


async def test_a_dry_run_moves_nothing(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("in/dry.csv", rows_of("A"))
    req = request(spec("in/dry.csv", after_import="delete"), job_id=742, trigger=Trigger.DRY_RUN)
    await run(h, req)
    assert (h.root / "in/dry.csv").exists()


@pytest.mark.parametrize("crash", ["before the move", "after the move"])
async def test_a_crash_between_load_and_move_neither_loses_the_file_nor_imports_it_twice(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, crash: str
) -> None:
    h = harness
    await contacts(h)
    h.write("in/c.csv", rows_of("A", "B", "C"))
    real = import_run.settle_files
    reached = asyncio.Event()
    calls = 0

    async def crashing(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first executor stops here, its load complete
            if crash == "after the move":
                await real(*args)
            reached.set()
            await asyncio.Event().wait()
        await real(*args)

    monkeypatch.setattr(import_run, "settle_files", crashing)
    dying, successor = h.service(executor_id="dying"), h.service(executor_id="successor")
    req = request(spec("in/c.csv", "append", after_import="archive", archive_dir="done"), job_id=750)
    await dying.accept(req)
    await asyncio.wait_for(reached.wait(), timeout=30)
    await dying.shutdown(grace=0)  # stopped past its grace: the lease is handed over at once
    h.services.remove(dying)  # shut down already
    assert await successor.take_over_expired() == 1
    done = (await h.finished("750.1")).data
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert (done.counts.read, done.counts.inserted) == (3, 3)  # the first load's counts
    assert len(await h.rows("contacts", "customer_id")) == 3  # appended once
    assert [p.name for p in (h.root / "done").iterdir()] == ["c.750.1.csv"]
    assert not (h.root / "in/c.csv").exists()
    logs = h.events.logs("750.1")
    assert "the load was complete before the take-over: only the files are left to settle" in logs
    expected = (
        "in/c.csv archived as done/c.750.1.csv"
        if crash == "before the move"
        else "in/c.csv was archived as done/c.750.1.csv already"
    )
    assert expected in logs
