"""The executor against a private RabbitMQ node (issue 13, items 2 and 5), services as OS processes.

- Runs waiting for an executor slot hold no delivery: with `consumer_timeout` at 3 s and one slot, runs
  queued behind a long one are claimed and acknowledged at once, wait inside the executor past twice the
  timeout (the long run is then stopped) and all succeed; nothing is dead-lettered.
- A broker outage mid-run is not the run's failure: the node is stopped for ~10 s while an import runs; the
  run keeps its lease and buffers its events, ends succeeded at attempt 1, counts exact, every log line once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import httpx
import pytest

from services.dev.processes import SystemProcesses
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.conftest import DEEP
from tests.e2e.test_executor_crash_and_stop import big_file, count_rows, job, wait_for_rows
from tests.support.api import wait_for_run
from tests.support.broker import queue_depth
from tests.support.rabbit_node import RabbitNode, rabbit_node
from tests.support.servers import Sshd
from tests.support.system import admin_api, isolated_settings, service_env, start_services, started_system
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
CONSUMER_TIMEOUT_S = 3
LONG_ROWS = 60_000
# The long run that holds the only slot: far more than it can import while the others wait; it is stopped
# once they have waited past twice the consumer timeout, so the test's length does not follow import speed.
WAITING_ROWS = 500_000
OUTAGE_S = 10.0
OUTAGE_TRIALS = (
    4 if DEEP else 1
)  # the suite runs one (graceful stop); the deep run alternates stop and kill -9


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    workdir = tmp_path_factory.mktemp("rabbit")
    with rabbit_node(workdir, consumer_timeout_ms=CONSUMER_TIMEOUT_S * 1000) as started:
        yield started


@pytest.fixture(scope="module")
def node_settings(node: RabbitNode, mongo_url: str) -> CommonSettings:
    return isolated_settings(node.amqp_url, mongo_url, "b")


def _services_and_one_executor(system: SystemProcesses) -> None:
    start_services("catalog", "scheduler", "logsink")(system)
    system.start("executor", extra_env={"EXECUTOR_EXECUTOR_ID": "exec-broker"})


@pytest.fixture(scope="module")
def processes(node_settings: CommonSettings) -> Iterator[SystemProcesses]:
    env = service_env(
        node_settings, CONNECT_GRACEFUL_TIMEOUT="5", EXECUTOR_PROGRESS_INTERVAL="0.5", EXECUTOR_CONCURRENCY="1",
        EXECUTOR_LEASE_SECONDS="6", EXECUTOR_REAPER_INTERVAL="1", EXECUTOR_BATCH_SIZE="500",
    )  # fmt: skip
    # The private node goes away with its data: nothing to remove from it.
    with started_system(node_settings, env, _services_and_one_executor, remove_topology=False) as system:
        yield system


@pytest.fixture(scope="module")
async def api(processes: SystemProcesses, node_settings: CommonSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_api(processes, node_settings) as http:
        yield http


async def run_now(api: httpx.AsyncClient, job_id: int) -> str:
    response = await api.post(f"/jobs/{job_id}/run")
    assert response.status_code in (200, 201, 202), response.text
    return str(response.json()["run_id"])


def runs_queue_idle(node: RabbitNode, queue: str) -> bool:
    """No request is ready or delivered-but-unacknowledged on the executor's work queue."""
    for line in node.ctl("list_queues", "name", "messages_ready", "messages_unacknowledged").splitlines():
        name, *counts = line.split()
        if name == queue:
            return counts == ["0", "0"]
    return False


@pytest.mark.timeout(300)
async def test_runs_waiting_for_a_slot_hold_no_delivery_past_the_consumer_timeout(
    api: httpx.AsyncClient, processes: SystemProcesses, node: RabbitNode, node_settings: CommonSettings, sshd: Sshd,
    mongo: MongoClient, unique: str,
) -> None:  # fmt: skip
    topology = Topology(prefix=node_settings.amqp_prefix)
    big_file(sshd, f"{unique}/long.csv", WAITING_ROWS)
    long_job = await job(api, sshd, unique, f"{unique}/long.csv", "append")
    waiting_jobs = []
    for i in range(3):
        big_file(sshd, f"{unique}/small{i}.csv", 10)
        waiting_jobs.append(await job(api, sshd, f"{unique}s{i}", f"{unique}/small{i}.csv", "append"))
    long_run = await run_now(api, long_job)
    await wait_for_rows(mongo, node_settings, unique, 1)
    waiting_runs = [await run_now(api, job_id) for job_id in waiting_jobs]

    # The waiting requests are claimed and acknowledged while the long run holds the only slot.
    await eventually(
        lambda: runs_queue_idle(node, topology.executor_runs.name),
        what="the waiting requests claimed and acknowledged (not waiting in the broker)",
        timeout=30,
    )
    await asyncio.sleep(2 * CONSUMER_TIMEOUT_S + 1)  # the experiment: waiting past the timeout, twice over
    still_running = (await api.get(f"/runs/{long_run}")).json()
    assert still_running["status"] == "running", ("the long run ended too soon", still_running)
    stop = await api.post(f"/jobs/{long_job}/stop", params={"confirm": "true"})
    assert stop.status_code == 202, stop.text

    finished = [await wait_for_run(api, run_id, timeout=120) for run_id in [long_run, *waiting_runs]]
    assert [run["status"] for run in finished] == ["stopped"] + ["succeeded"] * 3, finished
    assert [run["counts"]["inserted"] for run in finished[1:]] == [10, 10, 10]
    assert 0 < finished[0]["counts"]["inserted"] < WAITING_ROWS
    leases = node_settings.database("executor")
    for run_id in waiting_runs:
        lease = await mongo[leases]["run_leases"].find_one({"_id": run_id})
        assert lease is not None and lease["attempt"] == 1, lease
    assert await queue_depth(node.amqp_url, topology.dead_letters.name) == 0
    first_waiting = finished[1]
    waited = datetime.fromisoformat(first_waiting["start_time"]) - datetime.fromisoformat(
        first_waiting["requested_at"]
    )
    assert waited.total_seconds() > 2 * CONSUMER_TIMEOUT_S, (
        "the scenario needs runs that wait past the timeout"
    )
    executor_log = processes.processes["executor"].log_path.read_text()
    assert "delivery acknowledgement" not in executor_log  # the broker never timed a delivery out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("trial", range(OUTAGE_TRIALS))
async def test_a_broker_outage_mid_run_neither_fails_nor_repeats_the_run(
    api: httpx.AsyncClient, node: RabbitNode, node_settings: CommonSettings, sshd: Sshd,
    mongo: MongoClient, unique: str, trial: int,
) -> None:  # fmt: skip
    """Odd trials (CONNECT_DEEP) kill -9 the node instead of stopping it."""
    big_file(sshd, f"{unique}/big.csv", LONG_ROWS)
    job_id = await job(api, sshd, unique, f"{unique}/big.csv", "append")
    run_id = await run_now(api, job_id)
    await wait_for_rows(mongo, node_settings, unique, LONG_ROWS // 10)
    if trial % 2:
        node.kill()
    else:
        node.stop()
    before = await count_rows(mongo, node_settings, unique)
    await asyncio.sleep(OUTAGE_S)  # the length of the outage (the experiment), not a wait for an event
    during = await count_rows(mongo, node_settings, unique) - before
    node.start()
    run = await wait_for_run(api, run_id, timeout=240)

    assert during > 0, "the run stopped working while the broker was down"
    assert run["status"] == "succeeded", run
    assert run["counts"] == {"read": LONG_ROWS, "inserted": LONG_ROWS, "updated": 0, "rejected": 0,
                             "unchanged": 0, "skipped": 0}  # fmt: skip
    assert await count_rows(mongo, node_settings, unique) == LONG_ROWS  # appended once: none lost, none twice
    lease = await mongo[node_settings.database("executor")]["run_leases"].find_one({"_id": run_id})
    assert lease is not None and lease["attempt"] == 1 and lease["status"] == "finished", lease
    logs = (await api.get(f"/runs/{run_id}/logs")).json()
    seqs = [line["seq"] for line in logs["lines"]]
    assert seqs == list(range(1, len(seqs) + 1)) and logs["missing"] == [], logs
    messages = [line["message"] for line in logs["lines"]]
    assert sum(m.startswith("finished:") for m in messages) == 1, messages
    assert sum(" started on " in m for m in messages) == 1, messages
