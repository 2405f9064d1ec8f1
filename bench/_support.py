"""What the system benchmarks share: the database server's own counters and CPU time, percentiles, load.

Counting happens on the server side (`serverStatus().opcounters`, `top`), so it covers every client of
every service process, not only the bench's own. `top` attributes operations to namespaces
(`database.collection`); commands that name no collection (`commitTransaction`, `hello`, `endSessions`,
`serverStatus`) are counted by opcounters only.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient
from pymongo.collection import Collection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.dev.processes import SystemProcesses
from shared.mongo import EmbeddedMongo
from shared.settings import CommonSettings
from tests.support.api import contacts_table, import_job
from tests.support.servers import Sshd, sshd_server
from tests.support.system import admin_token, isolated_settings, service_env, started_system

OP_KINDS = ("insert", "query", "update", "delete", "getmore", "command")
# `top`'s sections, named like opcounters' kinds.
TOP_KINDS = {"insert": "insert", "queries": "query", "update": "update", "remove": "delete",
             "getmore": "getmore", "commands": "command"}  # fmt: skip


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile (`p` in 0..100); NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a local process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, of its children it has waited for, and of its live descendants."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        children = [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0  # ended between the listing and the read
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(tree_cpu_seconds(child) for child in children)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


@dataclass(frozen=True)
class ServerSample:
    """The server's counters at one instant: opcounters, `top` counts and times, its CPU seconds."""

    ops: Counter[str]
    namespace_ops: dict[str, Counter[str]]
    namespace_micros: Counter[str]
    cpu: float

    def minus(self, earlier: ServerSample) -> ServerDelta:
        namespaces = {
            ns: counts - earlier.namespace_ops.get(ns, Counter()) for ns, counts in self.namespace_ops.items()
        }
        return ServerDelta(
            ops=self.ops - earlier.ops,
            namespace_ops={ns: c for ns, c in namespaces.items() if c},
            namespace_micros=self.namespace_micros - earlier.namespace_micros,
            cpu=self.cpu - earlier.cpu,
        )


@dataclass
class ServerDelta:
    """What the server did between two samples."""

    ops: Counter[str]
    namespace_ops: dict[str, Counter[str]] = field(default_factory=dict)
    namespace_micros: Counter[str] = field(default_factory=Counter)
    cpu: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def within(self, *prefixes: str) -> dict[str, Counter[str]]:
        """The namespaces whose database name starts with one of `prefixes`."""
        return {ns: c for ns, c in self.namespace_ops.items() if ns.startswith(prefixes)}


class ServerProbe:
    """Samples one server; `sample_cost` is what one sample adds to opcounters (it is one command)."""

    sample_cost = Counter({"command": 2})  # serverStatus + top

    def __init__(self, url: str) -> None:
        self.client: MongoClient[dict[str, Any]] = MongoClient(url)
        self.pid = int(self.client.admin.command("serverStatus")["pid"])
        self.local = Path(f"/proc/{self.pid}/stat").exists()

    def sample(self) -> ServerSample:
        status = self.client.admin.command("serverStatus")
        totals = self.client.admin.command("top")["totals"]
        ops = Counter({kind: int(status["opcounters"].get(kind, 0)) for kind in OP_KINDS})
        namespace_ops: dict[str, Counter[str]] = {}
        micros: Counter[str] = Counter()
        for ns, sections in totals.items():
            if ns == "note":
                continue
            namespace_ops[ns] = Counter({kind: int(sections[s]["count"]) for s, kind in TOP_KINDS.items()})
            micros[ns] = int(sections["total"]["time"])
        return ServerSample(ops, namespace_ops, micros, cpu_seconds(self.pid) if self.local else float("nan"))

    def close(self) -> None:
        self.client.close()


def per_run(counts: Counter[str], runs: float) -> str:
    """`total (kind n, ...)` per run, kinds in opcounters' order."""
    parts = [f"{kind} {counts[kind] / runs:.1f}" for kind in OP_KINDS if counts[kind]]
    return f"{sum(counts.values()) / runs:.1f} ({', '.join(parts)})"


def breakdown_rows(delta: ServerDelta, runs: float, prefixes: tuple[str, ...]) -> list[str]:
    """One line per namespace of the measured system: ops per run by kind and the server time's share."""
    namespaces = delta.within(*prefixes)
    total_micros = sum(delta.namespace_micros[ns] for ns in namespaces) or 1
    rows = []
    for ns, counts in sorted(namespaces.items(), key=lambda item: -sum(item[1].values())):
        share = 100 * delta.namespace_micros[ns] / total_micros
        rows.append(f"    {ns:<58} {per_run(counts, runs):<52} {share:5.1f} % of its time")
    attributed = sum(sum(c.values()) for c in namespaces.values())
    rows.append(f"    {'(these namespaces)':<58} {attributed / runs:.1f}")
    rows.append(f"    {'(elsewhere: commits, hello, missing collections, other clients)':<58} "
                f"{(delta.total - attributed) / runs:.1f}")  # fmt: skip
    return rows


# --- the four Connect services, a 1-row CSV per job on sshd, and the jobs that import them -----------

ROW_HEADER = ["id", "email", "points"]
TERMINAL = ("succeeded", "partial", "failed", "stopped")


def row_file(job: int) -> str:
    """The file job number `job` (1-based, the bench's own numbering) imports, relative to sshd's root."""
    return f"rows/row{job}.csv"


def row_values(job: int) -> list[str]:
    return [f"C{job:06d}", f"user{job}@example.com", str(job * 10)]


def write_row_files(root: Path, count: int) -> None:
    """One 1-row CSV per job: the unit of work both runners import."""
    (root / "rows").mkdir(parents=True, exist_ok=True)
    for job in range(1, count + 1):
        (root / row_file(job)).write_text(",".join(ROW_HEADER) + "\n" + ",".join(row_values(job)) + "\n")


@contextmanager
def bench_servers(work: Path, mongo_url: str | None) -> Iterator[tuple[str, Sshd]]:
    """The database (MONGO_URL, else the embedded server started here) and a real sshd."""
    server = None
    if not mongo_url:
        server = EmbeddedMongo(work / "mongo")
        mongo_url = server.start()
    try:
        with sshd_server(work / "sshd") as sshd:
            yield mongo_url, sshd
    finally:
        if server is not None:
            server.stop()


@contextmanager
def connect_system(amqp_url: str, mongo_url: str, tag: str, **env: str) -> Iterator[ConnectSystem]:
    """The four services as processes with names of their own; `env` adds settings (EXECUTOR_CONCURRENCY…)."""
    settings = isolated_settings(amqp_url, mongo_url, tag)
    environment = service_env(settings, LOG_LEVEL="WARNING", **env)
    with started_system(settings, environment, SystemProcesses.start_all) as processes:
        yield ConnectSystem(processes, settings)


@dataclass
class ConnectSystem:
    processes: SystemProcesses
    settings: CommonSettings
    token: str = ""  # issued once: a token per round would add its writes to the round's count

    @property
    def api_url(self) -> str:
        return f"{self.processes.processes['catalog'].url}/api/v1"

    @property
    def runs_collection(self) -> tuple[str, str]:
        """(database, collection) of the run records the logsink writes."""
        return self.settings.database("logsink"), "runs"

    async def api(self) -> httpx.AsyncClient:
        self.token = self.token or await admin_token(self.settings, "bench")
        headers = {"Authorization": f"Bearer {self.token}"}
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        # No client-side timeout: the catalog bounds each answer (CATALOG_RUN_REQUEST_TIMEOUT).
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=None, limits=limits)


async def create_import_jobs(api: httpx.AsyncClient, sshd: Sshd, count: int, tables: int = 1) -> list[int]:
    """An SFTP connection, `tables` custom tables, `count` on-demand jobs; job n merges `row_file(n)`.

    Jobs share the tables round-robin. Connect lets one run at a time write a table (its per-table
    writer hold), so with one table the runs of a round take turns at the write.
    """
    connection = await api.post("/connections", json={
        "name": "bench-sshd", "host": sshd.host, "port": sshd.port, "username": sshd.username,
        "private_key": sshd.private_key, "host_key": sshd.host_key, "base_dir": str(sshd.root),
    })  # fmt: skip
    connection.raise_for_status()
    names = [f"bench_rows{t}" for t in range(tables)]
    for name in names:
        (await api.post("/tables", json=contacts_table(name))).raise_for_status()
    ids = []
    for n in range(1, count + 1):
        body = import_job(f"bench row {n}", int(connection.json()["id"]), row_file(n), names[n % tables])
        job = await api.post("/jobs", json=body)
        job.raise_for_status()
        ids.append(int(job.json()["id"]))
    return ids


async def run_now(api: httpx.AsyncClient, job_id: int) -> str:
    response = await api.post(f"/jobs/{job_id}/run")
    if response.status_code != 202:
        raise RuntimeError(f"run now of job {job_id}: {response.status_code} {response.text}")
    return str(response.json()["run_id"])


def wait_until_counted(
    collection: Collection[dict[str, Any]],
    query: dict[str, Any],
    count: int,
    timeout: float,
    poll: float,
    alive: Callable[[], None] = lambda: None,
) -> int:
    """Poll until `count` documents match; returns the number of polls (each one `aggregate` command).

    `alive` raises when what should produce the documents has died.
    """
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        alive()
        polls += 1
        if collection.count_documents(query) >= count:
            return polls
        if time.monotonic() > deadline:
            raise TimeoutError(f"{collection.full_name}: fewer than {count} documents match {query}")
        time.sleep(poll)


class Profiled:
    """The server's profiler (level 2) on `databases` while in the block; `rows` says what it recorded.

    Every command is written to `<db>.system.profile` (getMore and handshakes excepted), so it costs the
    server time: figures measured inside are for attribution only, never for speed.
    """

    def __init__(self, client: MongoClient[dict[str, Any]], databases: list[str]) -> None:
        self.client = client
        self.databases = databases
        self.since = datetime.now(UTC)

    def __enter__(self) -> Profiled:
        self.since = datetime.now(UTC)
        for db in self.databases:
            self.client[db].command("profile", 2, slowms=0)
        return self

    def __exit__(self, *exc: object) -> None:
        for db in self.databases:
            self.client[db].command("profile", 0)

    def rows(self, runs: int, bench_own: Counter[tuple[str, str]] | None = None) -> list[str]:
        """One line per (namespace, command) recorded since the block began: count and ms per run.

        `bench_own` counts the bench's own commands (its polls), left out of the figures.
        """
        counts: Counter[tuple[str, str]] = Counter()
        millis: Counter[tuple[str, str]] = Counter()
        for db in self.databases:
            for entry in self.client[db]["system.profile"].find({"ts": {"$gte": self.since}}):
                key = (str(entry["ns"]), next(iter(entry["command"]), "?"))
                counts[key] += 1
                millis[key] += int(entry.get("millis", 0))
        counts -= bench_own or Counter()
        ordered = sorted(counts, key=lambda key: -counts[key])
        lines = [f"    {ns:<58} {name:<18} {counts[(ns, name)] / runs:6.2f}/run  "
                 f"{millis[(ns, name)] / runs:7.1f} ms/run" for ns, name in ordered]  # fmt: skip
        lines.append(f"    {'(total recorded)':<58} {'':<18} {sum(counts.values()) / runs:6.2f}/run")
        return lines
