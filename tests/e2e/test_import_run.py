"""One import run through all four services: SFTP file → recorded, logged run and merged rows."""

from __future__ import annotations

import csv
from typing import Any

import httpx
import pytest

from shared.mongo import MongoClient
from tests.e2e.conftest import RunningSystem
from tests.support.api import contacts_table, import_job, wait_for_run
from tests.support.servers import Sshd

pytestmark = pytest.mark.e2e


def write_csv(sshd: Sshd, relative: str, rows: list[list[str]]) -> None:
    path = sshd.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


async def table_rows(mongo: MongoClient, system: RunningSystem, table: str) -> list[dict[str, Any]]:
    collection = mongo[system.settings.audience_database][f"table_{table}"]
    hidden = {"_id": 0, "_cx_run": 0, "_cx_at": 0}  # the executor's bookkeeping, not the user's data
    return [doc async for doc in collection.find({}, hidden).sort("customer_id", 1)]


async def create_job(api: httpx.AsyncClient, unique: str, connection_id: int, path: str) -> tuple[int, str]:
    table = f"contacts_{unique}"
    created = await api.post("/tables", json=contacts_table(table))
    assert created.status_code == 201, created.text
    job = await api.post("/jobs", json=import_job(f"import {unique}", connection_id, path, table))
    assert job.status_code == 201, job.text
    return int(job.json()["id"]), table


async def test_import_run_end_to_end(
    api: httpx.AsyncClient,
    system: RunningSystem,
    sshd: Sshd,
    sftp_connection: int,
    mongo: MongoClient,
    unique: str,
) -> None:
    rows = [[f"C{i:04d}", f"user{i}@example.com", str(i * 10)] for i in range(1, 251)]
    write_csv(sshd, f"{unique}/contacts.csv", [["id", "email", "points"], *rows])
    job_id, table = await create_job(api, unique, sftp_connection, f"{unique}/contacts.csv")
    expected = [{"customer_id": r[0], "email": r[1], "points": int(r[2])} for r in rows]

    first = await api.post(f"/jobs/{job_id}/run")
    assert first.status_code == 202, first.text
    assert first.json() == {"run_id": f"{job_id}.1"}
    run = await wait_for_run(api, f"{job_id}.1")
    assert run["status"] == "succeeded", run
    assert run["counts"] == {
        "read": 250,
        "inserted": 250,
        "updated": 0,
        "rejected": 0,
        "unchanged": 0,
        "skipped": 0,
    }
    assert run["job_name"] == f"import {unique}"
    assert run["job_type"] == "import"
    assert run["trigger"] == "on_demand"
    assert run["start_time"] is not None and run["duration_seconds"] >= 0
    assert await table_rows(mongo, system, table) == expected

    logs = (await api.get(f"/runs/{job_id}.1/logs")).json()
    seqs = [line["seq"] for line in logs["lines"]]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 5
    assert seqs[-1] == run["last_log_seq"]
    assert logs["missing"] == []
    messages = " | ".join(line["message"] for line in logs["lines"])
    for milestone in (
        "started",
        "connected",
        "file found",
        "header read",
        "100 % of the file read",
        "finished",
    ):
        assert milestone in messages

    second = await api.post(f"/jobs/{job_id}/run")
    assert second.json() == {"run_id": f"{job_id}.2"}
    rerun = await wait_for_run(api, f"{job_id}.2")
    assert rerun["status"] == "succeeded", rerun
    assert rerun["counts"] == {
        "read": 250,
        "inserted": 0,
        "updated": 0,
        "rejected": 0,
        "unchanged": 250,  # the same file again: every record holds its row's values, none is rewritten
        "skipped": 0,
    }
    assert await table_rows(mongo, system, table) == expected  # merged, not duplicated

    listed = (await api.get("/runs", params={"job_id": job_id})).json()
    assert [item["run_id"] for item in listed["items"]] == [f"{job_id}.2", f"{job_id}.1"]


async def test_malformed_rows_are_rejected_with_line_and_reason(
    api: httpx.AsyncClient,
    system: RunningSystem,
    sshd: Sshd,
    sftp_connection: int,
    mongo: MongoClient,
    unique: str,
) -> None:
    lines = [
        ["id", "email", "points"],
        ["A1", "a1@example.com", "1"],
        ["A2", "a2@example.com", "2"],
        ["A3", "a3@example.com", "three"],  # line 4: not an integer
        ["A4", "a4@example.com", "4"],
        ["A5", "not-an-email", "5"],  # line 6: not an email
        ["A6", "a6@example.com"],  # line 7: a column short
        ["A7", "a7@example.com", "7"],
    ]
    write_csv(sshd, f"{unique}/mixed.csv", lines)
    job_id, table = await create_job(api, unique, sftp_connection, f"{unique}/mixed.csv")

    run_id = (await api.post(f"/jobs/{job_id}/run")).json()["run_id"]
    run = await wait_for_run(api, run_id)

    assert run["status"] == "partial", run
    assert run["counts"] == {
        "read": 7,
        "inserted": 4,
        "updated": 0,
        "rejected": 3,
        "unchanged": 0,
        "skipped": 0,
    }
    assert [r["customer_id"] for r in await table_rows(mongo, system, table)] == ["A1", "A2", "A4", "A7"]
    rejects_path = sshd.root / unique / f"mixed.csv.{run_id}.rejects.csv"
    assert run["rejects_file"] == str(rejects_path)
    with rejects_path.open(newline="") as handle:
        rejects = list(csv.reader(handle))
    assert rejects == [
        ["line", "field", "reason"],
        ["4", "points", "'three' is not an integer"],
        ["6", "email", "'not-an-email' is not an email address"],
        ["7", "columns", "expected 3 columns, found 2"],
    ]
    logs = (await api.get(f"/runs/{run_id}/logs")).json()
    assert any(str(rejects_path) in line["message"] for line in logs["lines"])
