"""Two merge jobs on one table, run now at once, with two executor processes: both succeed, one waits for the
other (the table's writer lock), and the table holds what running them one after the other gives.

Each executor could hold both runs (concurrency 2), so wherever they land, only the lock keeps them apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.dev.processes import SystemProcesses
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.support.api import contacts_table, wait_for_run
from tests.support.servers import Sshd
from tests.support.system import admin_api, isolated_settings, service_env, start_services, started_system

pytestmark = pytest.mark.e2e
ROWS = 3000  # per file, in batches of 50: long enough for the second run to find the table held


@pytest.fixture(scope="module")
def lock_settings(amqp_url: str, mongo_url: str) -> CommonSettings:
    return isolated_settings(amqp_url, mongo_url, "w")


def _catalog_and_two_executors(system: SystemProcesses) -> None:
    start_services("catalog", "scheduler", "logsink")(system)
    for instance in ("a", "b"):
        system.start("executor", instance=instance, extra_env={"EXECUTOR_EXECUTOR_ID": f"exec-{instance}"})


@pytest.fixture(scope="module")
def processes(lock_settings: CommonSettings) -> Iterator[SystemProcesses]:
    env = service_env(lock_settings, EXECUTOR_BATCH_SIZE="50", EXECUTOR_WRITES_IN_FLIGHT="1")
    with started_system(lock_settings, env, _catalog_and_two_executors) as system:
        yield system


@pytest.fixture(scope="module")
async def api(processes: SystemProcesses, lock_settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_api(processes, lock_settings) as http:
        yield http


def write_file(sshd: Sshd, relative: str, keys: list[int], tag: str) -> dict[str, dict[str, Any]]:
    rows = {f"C{k:05}": {"customer_id": f"C{k:05}", "email": f"{tag}{k}@x.io", "points": k} for k in keys}
    path = sshd.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (f"{r['customer_id']},{r['email']},{r['points']}\n" for r in rows.values())
    path.write_text("id,email,points\n" + "".join(lines))
    return rows


async def merge_job(api: httpx.AsyncClient, connection: int, table: str, path: str) -> int:
    spec = {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": connection, "path": path},
        "mapping": [{"column": c, "field": f} for c, f in (("id", "customer_id"), ("email", "email"),
                                                            ("points", "points"))],
        "target": {"kind": "custom", "table": table, "mode": "merge"},
    }  # fmt: skip
    response = await api.post("/jobs", json={"name": f"merge {path}", "spec": spec})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def test_two_merges_run_now_at_once_end_as_one_after_the_other(
    api: httpx.AsyncClient, sshd: Sshd, lock_settings: CommonSettings, mongo: MongoClient, unique: str
) -> None:
    connection = await api.post("/connections", json={
        "name": f"sshd-{unique}", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "private_key": sshd.private_key, "host_key": sshd.host_key, "base_dir": str(sshd.root),
    })  # fmt: skip
    assert connection.status_code == 201, connection.text
    table = f"contacts_{unique}"
    assert (await api.post("/tables", json=contacts_table(table))).status_code == 201
    # Shared keys in opposite orders: interleaved batches would leave some with A's values, some with B's.
    first = write_file(sshd, f"{unique}/a.csv", list(range(ROWS)), "a")
    second = write_file(sshd, f"{unique}/b.csv", list(range(ROWS // 2, ROWS * 3 // 2))[::-1], "b")
    jobs = [await merge_job(api, connection.json()["id"], table, f"{unique}/{n}.csv") for n in ("a", "b")]

    started = await asyncio.gather(*(api.post(f"/jobs/{job_id}/run") for job_id in jobs))
    run_ids = [response.json()["run_id"] for response in started]
    runs = [await wait_for_run(api, run_id, timeout=120) for run_id in run_ids]

    assert [run["status"] for run in runs] == ["succeeded", "succeeded"], runs
    cursor = mongo[lock_settings.audience_database][f"table_{table}"].find(
        {}, {"_id": 0, "_cx_run": 0, "_cx_at": 0}
    )
    actual = {doc["customer_id"]: doc async for doc in cursor}
    assert actual in ({**first, **second}, {**second, **first}), "not the end state of a serial order"
    logs = [[line["message"] for line in (await api.get(f"/runs/{r}/logs")).json()["lines"]] for r in run_ids]
    waited = [any(m.startswith("waiting for run") for m in messages) for messages in logs]
    assert waited.count(True) == 1, logs  # the later one waited for the earlier one
    later, later_rows = (1, second) if waited[1] else (0, first)
    assert actual == {**(first if later else second), **later_rows}
    counts, shared = runs[later]["counts"], ROWS // 2
    assert (counts["inserted"], counts["updated"]) == (ROWS - shared, shared)
