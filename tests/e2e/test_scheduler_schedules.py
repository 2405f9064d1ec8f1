"""Schedules through the whole system: a one-time job fires on its own; Run now while it runs is refused.

The job reads a file that waits for its `.ready` marker, so its run stays in progress until the test
writes the marker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.test_import_run import create_job, write_csv
from tests.support.api import wait_for_run
from tests.support.servers import Sshd
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def runs_of(api: httpx.AsyncClient, job_id: int, timeout: float = 60) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        response = await api.get("/runs", params={"job_id": job_id})
        return list(response.json().get("items") or []) if response.status_code == 200 else None

    return await eventually(listed, what=f"a run of job {job_id}", timeout=timeout, interval=0.3)


async def test_one_time_schedule_fires_and_run_now_while_running_is_refused(
    api: httpx.AsyncClient, sshd: Sshd, sftp_connection: int, unique: str
) -> None:
    path = f"in/sched_{unique}.csv"
    write_csv(sshd, path, [["id", "email", "points"], ["1", "a@example.com", "5"]])
    job_id, _ = await create_job(api, unique, sftp_connection, path)
    at = datetime.now(UTC) + timedelta(seconds=4)
    source = {
        "kind": "sftp", "connection_id": sftp_connection, "path": path, "ready_file": "wait",
        "ready_wait_seconds": 120,
    }  # fmt: skip
    current = (await api.get(f"/jobs/{job_id}")).json()
    spec = current["spec"] | {"source": source}
    edited = await api.patch(
        f"/jobs/{job_id}",
        json={
            "version": current["version"],
            "spec": spec,
            "schedule": {"type": "one_time", "at": at.isoformat()},
        },
    )
    assert edited.status_code == 200, edited.text

    (run,) = await runs_of(api, job_id)  # fired by the scheduler at `at`, now waiting for `.ready`
    assert run["trigger"] == "scheduled"
    refused = await api.post(f"/jobs/{job_id}/run")
    assert refused.status_code == 409, refused.text
    assert "running" in refused.text

    (sshd.root / f"{path}.ready").write_text("")
    finished = await wait_for_run(api, run["run_id"], timeout=120)
    assert finished["status"] == "succeeded"
    job = (await api.get(f"/jobs/{job_id}")).json()
    assert job["next_run"] is None  # non-recurring: blank once fired
    assert job["previous_run"] is not None
    again = await api.post(f"/jobs/{job_id}/run")
    assert again.status_code == 202, again.text
    assert again.json()["run_id"] == f"{job_id}.2"
