"""Run history through a running logsink and the catalog's API: every Completed-jobs field, group runs,
duplicates and reordering, paging and filters, logs with gaps and the live tail (SSE).

The lifecycle events are published on the real broker as the scheduler and executors would; the
logsink consumes them from its queue and the catalog serves what it recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.catalog.adapters.repository import MongoCatalogRepository
from services.catalog.domain import Role
from services.catalog.main import build_app as build_catalog
from services.catalog.service import issue_token
from services.logsink.config import LogsinkSettings
from services.logsink.main import build_app as build_logsink
from shared.contracts import (
    Envelope,
    GroupRunFinished,
    GroupRunStarted,
    RunFinished,
    RunLog,
    RunProgress,
    RunRequested,
    RunStarted,
)
from shared.contracts.groups import GroupRunFinishedData, GroupRunStartedData
from shared.contracts.jobs import JobSnapshot
from shared.contracts.runs import (
    RunCounts,
    RunFinishedData,
    RunLogData,
    RunProgressData,
    RunRequestedData,
    RunStartedData,
    RunStatus,
    Trigger,
)
from shared.messaging import Publisher
from shared.mongo import MongoClient, free_port
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.waiting import eventually

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class History:
    """A running logsink and catalog, a publisher, and the catalog's API."""

    def __init__(self, catalog: FastAPI, logsink: FastAPI, token: str) -> None:
        self.catalog = catalog
        self.logsink = logsink
        self.publisher: Publisher = logsink.state.runtime.publisher
        self.headers = {"Authorization": f"Bearer {token}"}

    async def publish(self, *events: Envelope) -> None:
        for event in events:
            await self.publisher.publish(event)

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.catalog)
        return httpx.AsyncClient(transport=transport, base_url="http://catalog/api/v1", headers=self.headers)

    async def get(self, path: str, **params: Any) -> Any:
        async with self.client() as client:
            response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_run(
        self, run_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        return await self._wait(f"/runs/{run_id}", until, timeout, f"run {run_id}")

    async def wait_group_run(
        self, group_run_id: str, until: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        return await self._wait(f"/group-runs/{group_run_id}", until, 15, f"group run {group_run_id}")

    async def wait_log_lines(self, run_id: str, count: int) -> dict[str, Any]:
        """The run's first log page once it holds `count` lines."""
        return await eventually(
            lambda: self.get(f"/runs/{run_id}/logs"),
            until=lambda page: len(page["lines"]) == count,
            what=f"{count} log lines of run {run_id}",
            interval=0.1,
        )

    async def _wait(
        self, path: str, until: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        return await eventually(
            lambda: self._maybe(path), until=until, what=f"{what} as expected", timeout=timeout, interval=0.1
        )

    async def _maybe(self, path: str) -> dict[str, Any] | None:
        async with self.client() as client:
            response = await client.get(path)
        return response.json() if response.status_code == 200 else None


@pytest.fixture
async def history(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[History]:
    logsink = build_logsink(settings, LogsinkSettings(flush_interval=0.05, batch_size=100, prefetch=500))
    catalog = build_catalog(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(logsink.router.lifespan_context(logsink))
        await stack.enter_async_context(catalog.router.lifespan_context(catalog))
        repo = MongoCatalogRepository(mongo, settings.database("catalog"))
        yield History(catalog, logsink, await issue_token(repo, "viewer", Role.VIEWER))
    for service in ("catalog", "logsink"):
        await mongo.drop_database(settings.database(service))


# --- events as the scheduler and the executors publish them ----------------------------------------


def snapshot(job_id: int, name: str) -> JobSnapshot:
    return JobSnapshot.model_validate(
        {
            "job_id": job_id,
            "name": name,
            "job_type": "import",
            "spec": {
                "kind": "import",
                "source": {"kind": "sftp", "connection_id": 1, "path": "in/a.csv"},
                "mapping": [{"column": "id", "field": "id"}],
                "target": {"kind": "custom", "table": "t"},
            },
        }
    )


def requested(run_id: str, name: str, *, trigger: Trigger = Trigger.SCHEDULED, group: tuple[str, int, str] | None = None,
              at: datetime = T0) -> RunRequested:  # fmt: skip
    group_fields = {}
    if group is not None:
        group_fields = {"group_run_id": group[0], "group_id": group[1], "group_name": group[2]}
    data = RunRequestedData(
        run_id=run_id, job=snapshot(int(run_id.split(".")[0]), name), trigger=trigger,
        requested_by="scheduler", requested_at=at, **group_fields,
    )  # fmt: skip
    return RunRequested(source="connect/scheduler", subject=run_id, data=data)


def started(run_id: str, name: str, *, trigger: Trigger = Trigger.SCHEDULED, at: datetime = T0,
            executor: str = "executor-a", attempt: int = 1) -> RunStarted:  # fmt: skip
    data = RunStartedData(
        run_id=run_id, job_id=int(run_id.split(".")[0]), job_name=name, job_type="import", trigger=trigger,
        executor=executor, attempt=attempt, started_at=at,
    )  # fmt: skip
    return RunStarted(source="connect/executor", subject=run_id, data=data)


def progress(run_id: str, read: int, at: datetime) -> RunProgress:
    data = RunProgressData(
        run_id=run_id, records_read=read, records_written=read, records_rejected=0, bytes_read=read * 10,
        bytes_total=1000, records_per_second=50.0, at=at,
    )  # fmt: skip
    return RunProgress(source="connect/executor", subject=run_id, data=data)


def log(run_id: str, seq: int, message: str = "", level: str = "info") -> RunLog:
    data = RunLogData(
        run_id=run_id, seq=seq, level=level, message=message or f"line {seq}", fields={"seq": seq},
        at=T0 + timedelta(milliseconds=seq),
    )  # fmt: skip
    return RunLog(source="connect/executor", subject=run_id, data=data)


def finished(run_id: str, status: RunStatus, counts: RunCounts, *, seconds: float, last_log_seq: int,
             error: str | None = None, rejects_file: str | None = None, at: datetime = T0) -> RunFinished:  # fmt: skip
    data = RunFinishedData(
        run_id=run_id, job_id=int(run_id.split(".")[0]), status=status, counts=counts, started_at=at,
        finished_at=at + timedelta(seconds=seconds), error=error, rejects_file=rejects_file,
        last_log_seq=last_log_seq,
    )  # fmt: skip
    return RunFinished(source="connect/executor", subject=run_id, data=data)


def a_run(run_id: str, name: str, status: RunStatus, counts: RunCounts, **extra: Any) -> list[Envelope]:
    trigger = extra.pop("trigger", Trigger.SCHEDULED)
    group = extra.pop("group", None)
    at = extra.pop("at", T0)
    lines = [log(run_id, seq) for seq in (1, 2, 3)]
    return [
        requested(run_id, name, trigger=trigger, group=group, at=at - timedelta(seconds=1)),
        started(run_id, name, trigger=trigger, at=at),
        *lines[:2],
        progress(run_id, 5, at + timedelta(seconds=1)),
        lines[2],
        finished(run_id, status, counts, seconds=42.5, last_log_seq=3, at=at, **extra),
    ]


def terminal(run: dict[str, Any]) -> bool:
    return run["status"] in {"succeeded", "partial", "failed", "stopped"}


# --- the tests -------------------------------------------------------------------------------------


async def test_every_completed_jobs_field_for_succeeded_partial_failed_and_stopped_runs(
    history: History,
) -> None:
    cases = {
        "11.1": (RunStatus.SUCCEEDED, RunCounts(read=100, inserted=60, updated=40), {}),
        "12.4": (
            RunStatus.PARTIAL,
            RunCounts(read=10, inserted=7, rejected=3),
            {"rejects_file": "/in/b.csv.12.4.rejects.csv", "trigger": Trigger.ON_DEMAND},
        ),
        "13.2": (RunStatus.FAILED, RunCounts(read=4), {"error": "SFTP host key mismatch"}),
        "14.7": (RunStatus.STOPPED, RunCounts(read=50, inserted=50), {"error": "stopped by ops"}),
    }
    for run_id, (status, counts, extra) in cases.items():
        await history.publish(*a_run(run_id, f"job {run_id}", status, counts, **dict(extra)))

    for run_id, (status, counts, extra) in cases.items():
        run = await history.wait_run(run_id, terminal)
        assert run["run_id"] == run_id  # JobID.RunID
        assert run["job_id"] == int(run_id.split(".")[0])
        assert run["job_name"] == f"job {run_id}"
        assert run["job_type"] == "import"
        assert run["status"] == status.value
        assert run["run_status"] == (
            "Success" if status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL) else "Failed"
        )
        assert run["ended"] is True
        assert run["trigger"] == extra.get("trigger", Trigger.SCHEDULED).value
        assert datetime.fromisoformat(run["start_time"]) == T0
        assert run["duration_seconds"] == 42.5
        assert datetime.fromisoformat(run["finished_at"]) == T0 + timedelta(seconds=42.5)
        assert run["counts"] == counts.model_dump()
        assert run["rejects_file"] == extra.get("rejects_file")
        assert run["error"] == extra.get("error")
        assert run["executor"] == "executor-a"
        assert run["last_log_seq"] == 3
        assert run["group_run_id"] is None and run["group_name"] is None
        assert run["progress"] is None  # only while running
    logs = await history.get("/runs/12.4/logs")
    assert [line["seq"] for line in logs["lines"]] == [1, 2, 3]
    assert logs["missing"] == [] and logs["complete"]


async def test_queued_and_running_runs_are_shown_with_progress(history: History) -> None:
    await history.publish(requested("21.1", "waiting"))
    queued = await history.wait_run("21.1", lambda r: True)
    assert (queued["status"], queued["run_status"], queued["start_time"]) == ("queued", "Queued", None)
    assert queued["ended"] is False

    await history.publish(started("21.1", "waiting"), progress("21.1", 30, T0 + timedelta(seconds=2)))
    running = await history.wait_run("21.1", lambda r: r["progress"] is not None)
    assert (running["status"], running["run_status"], running["ended"]) == ("running", "Running", False)
    assert running["progress"]["records_read"] == 30
    assert running["executor"] == "executor-a"


async def test_a_group_run_of_three_with_its_members_in_order(history: History) -> None:
    group = ("5.3", 5, "morning load")
    g_started = GroupRunStarted(
        source="connect/scheduler",
        data=GroupRunStartedData(
            group_run_id="5.3", group_id=5, group_name="morning load", job_ids=(31, 32, 33),
            trigger=Trigger.SCHEDULED, started_at=T0,
        ),
    )  # fmt: skip
    g_finished = GroupRunFinished(
        source="connect/scheduler",
        data=GroupRunFinishedData(
            group_run_id="5.3", group_id=5, status=RunStatus.SUCCEEDED,
            member_run_ids=("31.2", "32.9", "33.1"), finished_at=T0 + timedelta(minutes=3),
        ),
    )  # fmt: skip
    counts = RunCounts(read=10, inserted=10)
    members = [
        a_run(
            run_id,
            f"step {i}",
            RunStatus.SUCCEEDED,
            counts,
            trigger=Trigger.GROUP,
            group=group,
            at=T0 + timedelta(minutes=i),
        )
        for i, run_id in enumerate(("31.2", "32.9", "33.1"))
    ]
    await history.publish(g_started)
    # The last member's events arrive first: the order still comes from the group.
    for events in reversed(members):
        await history.publish(*events)
    running = await history.wait_group_run("5.3", lambda g: len(g["members"]) == 3)
    assert (running["status"], running["ended"]) == ("running", False)
    assert running["member_run_ids"] == ["31.2", "32.9", "33.1"]
    await history.publish(g_finished, g_finished)  # + a duplicate

    detail = await history.wait_group_run("5.3", terminal)
    assert detail["group_run_id"] == "5.3"  # GroupID.RunID
    assert (detail["group_id"], detail["group_name"]) == (5, "morning load")
    assert (detail["status"], detail["run_status"], detail["trigger"]) == (
        "succeeded",
        "Success",
        "scheduled",
    )
    assert detail["ended"] is True
    assert detail["job_ids"] == [31, 32, 33]
    assert datetime.fromisoformat(detail["start_time"]) == T0
    assert detail["duration_seconds"] == 180.0
    assert detail["member_run_ids"] == ["31.2", "32.9", "33.1"]
    assert [m["run_id"] for m in detail["members"]] == ["31.2", "32.9", "33.1"]
    for member in detail["members"]:
        assert member["group_run_id"] == "5.3"  # the link member → group run
        assert (member["group_id"], member["group_name"]) == (5, "morning load")
        assert member["trigger"] == "group"
        assert member["status"] == "succeeded"
    listed = await history.get("/group-runs", group_id=5)
    assert [g["group_run_id"] for g in listed["items"]] == ["5.3"]
    assert listed["items"][0]["member_run_ids"] == ["31.2", "32.9", "33.1"]
    by_group = await history.get("/runs", group_run_id="5.3", sort="start_time")
    assert [r["run_id"] for r in by_group["items"]] == ["31.2", "32.9", "33.1"]


async def test_duplicated_and_reordered_events_never_change_a_terminal_record(history: History) -> None:
    events = a_run("41.1", "dup", RunStatus.FAILED, RunCounts(read=3), error="boom")
    req, start, line1, line2, prog, line3, fin = events
    late_start = started("41.1", "dup", at=T0 + timedelta(seconds=30), executor="executor-b", attempt=2)
    late_progress = progress("41.1", 999, T0 + timedelta(hours=1))
    other_finish = finished("41.1", RunStatus.SUCCEEDED, RunCounts(read=99), seconds=1, last_log_seq=9)
    # RunFinished first, then everything else late, duplicated, and a contradicting RunFinished.
    await history.publish(fin, line3, prog, line1, start, req, fin, line1, late_progress, other_finish)
    await history.publish(late_start, line2, line2, req)
    run = await history.wait_run("41.1", lambda r: terminal(r) and r["executor"] == "executor-b")
    logs = await history.wait_run("41.1", lambda r: True)
    assert run["status"] == "failed" and run["error"] == "boom"
    assert run["counts"] == RunCounts(read=3).model_dump()
    assert run["duration_seconds"] == 42.5 and run["last_log_seq"] == 3
    assert datetime.fromisoformat(run["start_time"]) == T0  # the first start stays
    assert run["progress"] is None and logs["job_name"] == "dup"
    page = await history.wait_log_lines("41.1", 3)
    assert [line["seq"] for line in page["lines"]] == [1, 2, 3]
    metrics = await _logsink_metrics(history)
    assert metrics.get('connect_logsink_duplicates_total{type="run.finished"}', 0) >= 1
    assert metrics.get('connect_logsink_duplicates_total{type="run.log"}', 0) >= 2


async def test_runs_are_filtered_sorted_and_paged(history: History) -> None:
    counts = RunCounts(read=1, inserted=1)
    plan = [
        ("51.1", RunStatus.SUCCEEDED, T0), ("51.2", RunStatus.FAILED, T0 + timedelta(hours=1)),
        ("52.1", RunStatus.SUCCEEDED, T0 + timedelta(hours=2)), ("51.3", RunStatus.STOPPED, T0 + timedelta(hours=3)),
        ("51.10", RunStatus.SUCCEEDED, T0 + timedelta(hours=4)),
    ]  # fmt: skip
    for run_id, status, at in plan:
        await history.publish(*a_run(run_id, f"job {run_id[:2]}", status, counts, at=at))
    for run_id, *_ in plan:
        await history.wait_run(run_id, terminal)

    async def ids(**params: Any) -> list[str]:
        return [r["run_id"] for r in (await history.get("/runs", **params))["items"]]

    assert await ids(job_id=51) == ["51.10", "51.3", "51.2", "51.1"]  # newest first
    assert await ids(job_id=51, sort="run_id") == ["51.1", "51.2", "51.3", "51.10"]  # numeric order
    assert await ids(job_id=51, status=["failed", "stopped"], sort="start_time") == ["51.2", "51.3"]
    assert await ids(status="succeeded", job_type="import", sort="start_time") == ["51.1", "52.1", "51.10"]
    window = {
        "started_from": (T0 + timedelta(hours=1)).isoformat(),
        "started_to": (T0 + timedelta(hours=3)).isoformat(),
    }
    assert await ids(sort="start_time", **window) == ["51.2", "52.1"]
    page = await history.get("/runs", job_id=51, sort="-start_time", offset=1, limit=2)
    assert [r["run_id"] for r in page["items"]] == ["51.3", "51.2"]
    assert (page["total"], page["offset"], page["limit"]) == (4, 1, 2)
    assert await ids(job_id=51, trigger="on_demand") == []
    async with history.client() as client:
        assert (await client.get("/runs/51.99")).status_code == 404
        assert (await client.get("/runs", params={"sort": "bogus"})).status_code == 422
        assert (await client.get("/group-runs/9.9")).status_code == 404


async def test_log_pages_and_gaps_shown_as_missing(history: History) -> None:
    lines = [log("61.1", seq) for seq in range(1, 11) if seq not in (4, 5)]
    await history.publish(requested("61.1", "logs"), started("61.1", "logs"), *lines)
    await history.publish(finished("61.1", RunStatus.SUCCEEDED, RunCounts(), seconds=1, last_log_seq=12))
    await history.wait_run("61.1", terminal)
    await history.wait_log_lines("61.1", 8)

    first = await history.get("/runs/61.1/logs", limit=4)
    assert [line["seq"] for line in first["lines"]] == [1, 2, 3, 6]
    assert first["missing"] == [[4, 5]] and not first["complete"]
    second = await history.get("/runs/61.1/logs", after=first["next_after"], limit=4)
    assert [line["seq"] for line in second["lines"]] == [7, 8, 9, 10]
    last = await history.get("/runs/61.1/logs", after=second["next_after"], limit=4)
    assert last["lines"] == [] and last["missing"] == [[11, 12]] and last["complete"]
    line = first["lines"][0]
    assert (line["level"], line["message"], line["fields"]) == ("info", "line 1", {"seq": 1})
    assert datetime.fromisoformat(line["at"]) == T0 + timedelta(milliseconds=1)


async def test_live_tail_follows_a_run_until_it_ends(history: History) -> None:
    history.catalog.state.runs.gap_grace = 0.5
    await history.publish(requested("71.1", "tail"), started("71.1", "tail"), log("71.1", 1), log("71.1", 2))
    await history.wait_run("71.1", lambda r: r["status"] == "running")
    received: list[tuple[str, dict[str, Any]]] = []

    async def follow() -> None:
        async with (
            serving(history.catalog) as base_url,
            httpx.AsyncClient(base_url=base_url, headers=history.headers, timeout=30) as client,
            client.stream("GET", "/runs/71.1/logs/stream") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            event = None
            async for text in response.aiter_lines():
                if text.startswith("event: "):
                    event = text.removeprefix("event: ")
                elif text.startswith("data: ") and event:
                    received.append((event, json.loads(text.removeprefix("data: "))))

    reader = asyncio.create_task(follow())
    await eventually(lambda: sum(e == "line" for e, _ in received) == 2, what="the 2 lines streamed")
    assert not reader.done()  # still running: the stream stays open
    await history.publish(log("71.1", 3), log("71.1", 5))  # 4 is lost
    await history.publish(finished("71.1", RunStatus.SUCCEEDED, RunCounts(), seconds=3, last_log_seq=6))
    await asyncio.wait_for(reader, 20)

    kinds = [e for e, _ in received]
    assert kinds[0] == "status" and kinds[-1] == "end"
    lines = [d["seq"] for e, d in received if e == "line"]
    assert lines == [1, 2, 3, 5]
    missing = [(d["from"], d["to"], d["message"]) for e, d in received if e == "missing"]
    assert missing == [(4, 4, "log lines missing"), (6, 6, "log lines missing")]
    assert received[-1][1] == {"status": "succeeded", "last_log_seq": 6}
    async with history.client() as client:
        assert (await client.get("/runs/71.9/logs/stream")).status_code == 404


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real HTTP server (the ASGI test transport buffers whole responses, so no SSE)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, what="the server started", timeout=10)
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.should_exit = True
        await task


async def _logsink_metrics(history: History) -> dict[str, float]:
    transport = httpx.ASGITransport(app=history.logsink)
    async with httpx.AsyncClient(transport=transport, base_url="http://logsink") as client:
        text = (await client.get("/metrics")).text
    samples: dict[str, float] = {}
    for row in text.splitlines():
        if row and not row.startswith("#"):
            name, _, value = row.rpartition(" ")
            samples[name] = float(value)
    return samples
