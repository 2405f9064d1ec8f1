"""Database operations of one run, end to end (issue #14): a run-now of a 1-row import costs exactly these.

The four services run as processes (`tests/support/system.py`) with their time-based work (the
scheduler's ticker and relay, the catalog's relay, the executor's reaper, lease heartbeats, progress
events, the token cache's expiry) pushed far apart, so that every command the server receives in the
measured window is the run's, whatever the machine's speed: as long as the run takes under 10 s its log
lines need no write of their own (they go out with the stored result) and the logsink takes all its events
in one batch. The server's profiler names each command with its database and collection; the test's own
polls (its command listener names them) are taken out. A lone run costs 14; in a burst (bench/
run_overhead.py) the catalog's and the scheduler's reads and commits are shared by many runs.

A failure prints the difference: a `+` is an operation that came back (or a new one: say in docs/ what it
is for), a `-` one that went (say what now carries its guarantee) - then update EXPECTED.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import AsyncMongoClient, monitoring

from services.dev.processes import SystemProcesses
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.support.api import contacts_table, import_job
from tests.support.commands import Commands
from tests.support.servers import Sshd
from tests.support.system import admin_token, isolated_settings, service_env, started_system
from tests.support.waiting import eventually

Op = tuple[str, str, str]  # (service database, collection, command); "admin" for transaction commits

# One run-now of a 1-row import into an existing custom table, from the POST until every service is done.
EXPECTED: Counter[Op] = Counter(
    {
        # catalog: the job, for the run-now checks and the snapshot the run works on.
        ("catalog", "jobs", "find"): 1,
        # catalog: the audit entry of the run-now (who, the job, the run id), one insert once the
        # scheduler accepted the run (a refused run-now leaves none; issue #19).
        ("catalog", "audit_log", "insert"): 1,
        # scheduler: the run id allocated and the job taken in one guarded write (the replica knows the
        # job's run counter from its last run: no read), the outbox entry, the commit; the entry marked
        # published; the job freed when RunFinished arrives.
        ("scheduler", "schedule_state", "update"): 2,
        ("scheduler", "outbox", "insert"): 1,
        ("scheduler", "outbox", "update"): 1,
        ("admin", "", "commitTransaction"): 1,
        # executor: the connection read (the table definition, immutable, comes from its cache); the lease
        # claimed and started in one write (with the table's writer lock), the result stored (ending the
        # lock), marked reported.
        ("catalog", "connections", "find"): 1,
        ("executor", "run_leases", "findAndModify"): 1,
        ("executor", "run_leases", "update"): 2,
        # the import's data work: the row's key looked up, the row merged.
        ("audience", "table_ops_rows", "find"): 1,
        ("audience", "table_ops_rows", "update"): 1,
        # logsink: one batch for all the run's events (the record, its log lines in one chunk).
        ("logsink", "runs", "update"): 1,
        ("logsink", "run_logs", "insert"): 1,
    }
)

# What each service gets so that nothing time-based happens while the run is measured (seconds).
QUIET = {
    "SCHEDULER_TICK_SECONDS": "3600",
    "SCHEDULER_OUTBOX_RELAY_INTERVAL": "3600",
    "CATALOG_OUTBOX_RELAY_INTERVAL": "3600",
    "CATALOG_TOKEN_CACHE_SECONDS": "3600",
    "EXECUTOR_REAPER_INTERVAL": "3600",
    "EXECUTOR_LEASE_SECONDS": "600",
    "EXECUTOR_PROGRESS_INTERVAL": "3600",
    "EXECUTOR_LOG_FLUSH_SECONDS": "10",
    "LOGSINK_FLUSH_INTERVAL": "10",
    "LOGSINK_NOTIFY_POLL_INTERVAL": "3600",  # its looks for notifications are per time, not per run
}


class NamedCommands(Commands):
    """The test's own commands, with their database (its polls are not the run's work)."""

    def __init__(self) -> None:
        super().__init__()
        self.named: list[tuple[str, str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        super().started(event)
        name, collection = self.seen[-1]
        self.named.append((event.database_name, collection, name))


@pytest.fixture(scope="module")
def ops_settings(amqp_url: str, mongo_url: str) -> CommonSettings:
    return isolated_settings(amqp_url, mongo_url, "ops")


@pytest.fixture(scope="module")
def quiet_system(ops_settings: CommonSettings) -> Iterator[SystemProcesses]:
    env = service_env(ops_settings, **QUIET)
    with started_system(ops_settings, env, SystemProcesses.start_all) as processes:
        yield processes


class Profile:
    """The server's profiler on the system's databases (and admin, where commits are recorded)."""

    def __init__(self, client: MongoClient, settings: CommonSettings) -> None:
        self.client = client
        self.prefix = settings.db_prefix + "_"
        self.databases: list[str] = []

    async def __aenter__(self) -> Profile:
        names = await self.client.list_database_names()
        self.databases = [n for n in names if n.startswith(self.prefix)] + ["admin"]
        for name in self.databases:
            await self.client[name].command("profile", 0)
            await self.client[name]["system.profile"].drop()
            await self.client[name].command("profile", 2, slowms=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for name in self.databases:
            await self.client[name].command("profile", 0)

    async def ops(self) -> Counter[Op]:
        found: Counter[Op] = Counter()
        for name in self.databases:
            async for entry in self.client[name]["system.profile"].find({}, {"ns": 1, "command": 1}):
                command = entry.get("command") or {}
                verb = next(iter(command), "?")
                collection = str(entry.get("ns", "")).partition(".")[2]
                if name == "admin":
                    if verb in ("commitTransaction", "abortTransaction"):
                        found[("admin", "", verb)] += 1
                    continue
                found[(name.removeprefix(self.prefix), collection, verb)] += 1
        return found


async def _run_now(api: httpx.AsyncClient, job_id: int) -> str:
    response = await api.post(f"/jobs/{job_id}/run")
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


async def _settled(mongo: MongoClient, settings: CommonSettings, job_id: int, run_id: str) -> None:
    """Every service done with the run: recorded finished, job freed, result reported, outbox marked."""
    logsink = mongo[settings.database("logsink")]["runs"]
    schedules = mongo[settings.database("scheduler")]["schedule_state"]
    outbox = mongo[settings.database("scheduler")]["outbox"]
    leases = mongo[settings.database("executor")]["run_leases"]

    async def done() -> bool:
        run = await logsink.find_one({"_id": run_id}, {"status": 1})
        state = await schedules.find_one({"_id": f"job:{job_id}"}, {"running": 1})
        lease = await leases.find_one({"_id": run_id}, {"reported": 1})
        unpublished = await outbox.find_one({"published": False}, {"_id": 1})
        return bool(
            run
            and run.get("status") == "succeeded"
            and state
            and state.get("running") is None
            and lease
            and lease.get("reported") is True
            and unpublished is None
        )

    await eventually(done, what=f"run {run_id} settled in every service", timeout=60)


def _write_row(root: Path, points: int) -> None:
    (root / "ops").mkdir(exist_ok=True)
    (root / "ops" / "row.csv").write_text(f"id,email,points\nc1,a@example.com,{points}\n")


async def test_one_run_now_of_a_1_row_import_costs_exactly_its_operations(
    quiet_system: SystemProcesses, ops_settings: CommonSettings, sshd: Sshd
) -> None:
    settings = ops_settings
    listener = NamedCommands()
    assert settings.mongo_url
    mongo: MongoClient = AsyncMongoClient(settings.mongo_url, tz_aware=True, event_listeners=[listener])
    headers = {"Authorization": f"Bearer {await admin_token(settings, 'ops')}"}
    url = f"{quiet_system.processes['catalog'].url}/api/v1"
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as api:
            connection = await api.post("/connections", json={
                "name": "ops-sshd", "host": sshd.host, "port": sshd.port, "username": sshd.username,
                "private_key": sshd.private_key, "host_key": sshd.host_key, "base_dir": str(sshd.root),
            })  # fmt: skip
            assert connection.status_code == 201, connection.text
            assert (await api.post("/tables", json=contacts_table("ops_rows"))).status_code == 201
            body = import_job("ops", int(connection.json()["id"]), "ops/row.csv", "ops_rows")
            created = await api.post("/jobs", json=body)
            assert created.status_code == 201, created.text
            job_id = int(created.json()["id"])

            # The first run: the scheduler's document of the job, the executor's cache, first connections.
            _write_row(sshd.root, 1)
            await _settled(mongo, settings, job_id, await _run_now(api, job_id))

            _write_row(sshd.root, 2)  # the measured run updates the row
            listener.named.clear()  # from here on, every command of the test's client is taken out
            async with Profile(mongo, settings) as profile:
                run_id = await _run_now(api, job_id)
                await _settled(mongo, settings, job_id, run_id)
                ops = await profile.ops()
                ours = Counter(
                    (db.removeprefix(profile.prefix), collection, name)
                    for db, collection, name in listener.named
                    if db.startswith(profile.prefix)
                )
            row = await mongo[settings.database("audience")]["table_ops_rows"].find_one({"customer_id": "c1"})
    finally:
        await mongo.close()

    assert row is not None and row["points"] == 2, row
    measured = ops - ours
    came = measured - EXPECTED
    went = EXPECTED - measured
    print(f"\nrun {run_id}: {sum(measured.values())} operations: {dict(measured)}")
    assert not came and not went, f"+ {dict(came)}  - {dict(went)}"
