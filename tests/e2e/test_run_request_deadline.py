"""A caller that gave up (issue 13, item 4): with the scheduler down, Run now and Run group answer 503
"nothing was started"; when the scheduler comes back, those commands are not carried out (the broker
drops them at their expiry, the scheduler ignores any past its deadline), and a Run now after that works
normally. The services run as separate processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.dev.processes import SystemProcesses
from services.scheduler.store.documents import OUTBOX, SCHEDULES
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.e2e.test_import_run import write_csv
from tests.support.api import contacts_table, import_job, wait_for_group_run, wait_for_run
from tests.support.broker import get_message, queue_depth
from tests.support.servers import Sshd
from tests.support.system import admin_api, isolated_settings, service_env, start_services, started_system

pytestmark = pytest.mark.e2e
WAIT_SECONDS = 8  # the catalog's run-request timeout here: how long a caller waits for the scheduler


@pytest.fixture(scope="module")
def deadline_settings(amqp_url: str, mongo_url: str) -> CommonSettings:
    return isolated_settings(amqp_url, mongo_url, "d")


@pytest.fixture(scope="module")
def processes(deadline_settings: CommonSettings) -> Iterator[SystemProcesses]:
    """Catalog, logsink and executor running; the scheduler is left to the test to start."""
    env = service_env(
        deadline_settings, CONNECT_GRACEFUL_TIMEOUT="5", CATALOG_RUN_REQUEST_TIMEOUT=str(WAIT_SECONDS)
    )
    with started_system(deadline_settings, env, start_services("catalog", "logsink", "executor")) as system:
        yield system


@pytest.fixture(scope="module")
async def api(
    processes: SystemProcesses, deadline_settings: CommonSettings
) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_api(processes, deadline_settings) as http:
        yield http


async def two_jobs_and_a_group(api: httpx.AsyncClient, sshd: Sshd, unique: str) -> tuple[int, int, int]:
    """Job A (run on its own), job B (the only member of the group) and the group."""
    connection = await api.post("/connections", json={
        "name": f"sshd-{unique}", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "private_key": sshd.private_key, "host_key": sshd.host_key, "base_dir": str(sshd.root),
    })  # fmt: skip
    assert connection.status_code == 201, connection.text
    table = f"contacts_{unique}"
    assert (await api.post("/tables", json=contacts_table(table))).status_code == 201
    path = f"{unique}/contacts.csv"
    write_csv(sshd, path, [["id", "email", "points"], ["C1", "a@example.com", "5"]])
    ids = []
    for name in ("a", "b"):
        job = await api.post(
            "/jobs", json=import_job(f"{name} {unique}", connection.json()["id"], path, table)
        )
        assert job.status_code == 201, job.text
        ids.append(int(job.json()["id"]))
    group = await api.post("/groups", json={"name": f"group {unique}", "job_ids": [ids[1]]})
    assert group.status_code == 201, group.text
    return ids[0], ids[1], int(group.json()["id"])


async def runs(api: httpx.AsyncClient, **query: Any) -> list[str]:
    response = await api.get("/runs", params=query)
    assert response.status_code == 200, response.text
    return sorted(item["run_id"] for item in response.json()["items"])


@pytest.mark.timeout(180)
async def test_a_run_request_the_api_said_failed_is_never_carried_out_later(
    api: httpx.AsyncClient, processes: SystemProcesses, deadline_settings: CommonSettings, sshd: Sshd,
    mongo: MongoClient, unique: str,
) -> None:  # fmt: skip
    job_a, job_b, group = await two_jobs_and_a_group(api, sshd, unique)

    # No scheduler: both callers wait their 8 s and are told that nothing was started.
    job_answer, group_answer = await asyncio.gather(
        api.post(f"/jobs/{job_a}/run"), api.post(f"/groups/{group}/run")
    )
    for answer in (job_answer, group_answer):
        assert answer.status_code == 503, answer.text
        assert "nothing was started" in answer.json()["error"]["message"], answer.text

    # The broker let both commands expire with the callers' wait: dead-lettered, reason `expired`.
    topology = Topology(prefix=deadline_settings.amqp_prefix)
    dead = [await get_message(deadline_settings.amqp_url, topology.dead_letters.name, 30) for _ in "12"]
    assert sorted(str(m.type) for m in dead) == ["connect.group.run.v1", "connect.run.job.v1"]
    assert all((m.headers or {}).get("x-first-death-reason") == "expired" for m in dead), dead
    assert await queue_depth(deadline_settings.amqp_url, topology.scheduler_commands.name) == 0

    processes.start("scheduler")
    await asyncio.to_thread(processes.wait_ready)
    # The scheduler consumes its commands in order: by the time this Run now is answered, the stale
    # command queued before it was dropped or ignored. Had it run, this would be run 2 (or refused).
    fresh = await api.post(f"/jobs/{job_a}/run")
    assert fresh.status_code == 202, fresh.text
    assert fresh.json()["run_id"] == f"{job_a}.1"
    group_run = await api.post(f"/groups/{group}/run")
    assert group_run.status_code == 202, group_run.text
    assert group_run.json()["group_run_id"] == f"{group}.1"
    job_run, group_done = await asyncio.gather(
        wait_for_run(api, f"{job_a}.1", timeout=90), wait_for_group_run(api, f"{group}.1", timeout=90)
    )
    assert job_run["status"] == "succeeded" and group_done["status"] == "succeeded"

    assert await runs(api, job_id=job_a) == [f"{job_a}.1"]
    assert await runs(api, job_id=job_b) == [f"{job_b}.1"]
    ledger = mongo[deadline_settings.database("scheduler")]
    assert await ledger[OUTBOX].count_documents({"request_id": {"$exists": True}}) == 2  # the two answered
    state = await ledger[SCHEDULES].find_one({"_id": f"job:{job_a}"})
    assert state is not None and state["last_run"] == 1
