"""After a scheduled run through the four services: each service's /metrics shows the run with the
right values, every service logs JSON lines with service, run_id, job_id, level and event, and the
run's log can be tailed over Server-Sent Events from the catalog."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.dev.processes import SystemProcesses
from shared.metrics import package_version
from tests.e2e.conftest import RunningSystem
from tests.support.api import contacts_table, import_job, wait_for_run
from tests.support.servers import Sshd

pytestmark = pytest.mark.e2e

ROWS = 120
SERVICES = ("catalog", "scheduler", "executor", "logsink")
COMMON = {
    "connect_build_info": "gauge",
    "connect_event_loop_lag_seconds": "histogram",
    "connect_dead_letters_total": "counter",
}
# Each service exposes exactly the Connect series it produces (shared/metrics.py), no other's.
METRICS = {
    "catalog": COMMON
    | {
        "connect_http_requests_total": "counter",
        "connect_http_request_duration_seconds": "histogram",
        "connect_outbox_backlog": "gauge",
    },
    "scheduler": COMMON
    | {
        "connect_scheduler_fires_total": "counter",
        "connect_scheduler_fire_lag_seconds": "histogram",
        "connect_outbox_backlog": "gauge",
    },
    "executor": COMMON
    | {
        "connect_runs_total": "counter",
        "connect_run_duration_seconds": "histogram",
        "connect_runs_in_progress": "gauge",
        "connect_records_processed_total": "counter",
        "connect_sftp_bytes_total": "counter",
        "connect_sftp_connections_total": "counter",
    },
    "logsink": COMMON
    | {
        "connect_logsink_events_total": "counter",
        "connect_logsink_batch_seconds": "histogram",
        "connect_logsink_duplicates_total": "counter",
        "connect_notifications_total": "counter",
    },
}


def families(text: str) -> dict[str, str]:
    """The Connect metric families a scrape declares, with their types."""
    rows = (row.split() for row in text.splitlines() if row.startswith("# TYPE connect_"))
    return {row[2]: row[3] for row in rows if not row[2].endswith("_created")}  # the client's timestamps


def scrape(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for row in text.splitlines():
        if row and not row.startswith("#"):
            name, _, value = row.rpartition(" ")
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted)
    )


@pytest.fixture(scope="module")
async def scheduled_run(
    system: RunningSystem, sshd: Sshd, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One import job scheduled a few seconds ahead (one-time), run to the end."""
    unique = tmp_path_factory.mktemp("obs").name[-8:].replace("-", "_")
    path = sshd.root / f"obs{unique}" / "contacts.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [["id", "email", "points"], *([f"C{i}", f"u{i}@example.com", str(i)] for i in range(ROWS))]
        )
    headers = {"Authorization": f"Bearer {system.token}"}
    async with httpx.AsyncClient(base_url=system.api_url, headers=headers, timeout=30) as api:
        connection = await api.post(
            "/connections",
            json={"name": f"obs-{unique}", "host": sshd.host, "port": sshd.port, "username": sshd.username,
                  "private_key": sshd.private_key, "host_key": sshd.host_key, "base_dir": str(sshd.root)},
        )  # fmt: skip
        assert connection.status_code == 201, connection.text
        table = f"obs_{unique}"
        assert (await api.post("/tables", json=contacts_table(table))).status_code == 201
        job = import_job(f"observed {unique}", connection.json()["id"], f"obs{unique}/contacts.csv", table)
        at = datetime.now(UTC) + timedelta(seconds=4)
        job["schedule"] = {"type": "one_time", "at": at.isoformat()}
        created = await api.post("/jobs", json=job)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        run = await wait_for_run(api, f"{job_id}.1", timeout=90)
    return {"run": run, "job_id": job_id, "file_bytes": path.stat().st_size}


async def metrics_of(processes: SystemProcesses, service: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{processes.processes[service].url}/metrics")
    assert response.status_code == 200
    return scrape(response.text)


async def test_every_service_exposes_the_metrics_with_the_run_counted(
    system: RunningSystem, scheduled_run: dict[str, Any]
) -> None:
    run = scheduled_run["run"]
    assert run["status"] == "succeeded", run
    assert run["trigger"] == "scheduled"
    processes = system.processes
    by_service = {service: await metrics_of(processes, service) for service in SERVICES}
    for service, samples in by_service.items():
        build = f'connect_build_info{{service="{service}",version="{package_version()}"}}'
        assert samples.get(build) == 1.0, f"{service}: {build}"
        text = await _text(processes, service)
        assert families(text) == METRICS[service], service
        assert total(samples, "connect_dead_letters_total") == 0, f"{service} dead-lettered in a clean run"

    executor = by_service["executor"]
    labels = {"job_type": "import", "status": "succeeded", "trigger": "scheduled"}
    assert total(executor, "connect_runs_total", **labels) == 1
    assert total(executor, "connect_runs_total") == 1
    assert total(executor, "connect_run_duration_seconds_count", job_type="import") == 1
    assert (
        0
        <= total(executor, "connect_run_duration_seconds_sum", job_type="import")
        <= run["duration_seconds"] + 1
    )
    assert executor["connect_runs_in_progress"] == 0
    assert total(executor, "connect_records_processed_total", job_type="import", outcome="inserted") == ROWS
    assert total(executor, "connect_records_processed_total", outcome="rejected") == 0
    assert total(executor, "connect_sftp_bytes_total") == scheduled_run["file_bytes"]
    assert any(key.startswith("faststream_received_messages_total{") for key in executor)

    scheduler = by_service["scheduler"]
    assert total(scheduler, "connect_scheduler_fires_total", outcome="requested") == 1
    assert total(scheduler, "connect_scheduler_fire_lag_seconds_count") == 1
    for outcome in ("overlap", "inactive", "expired", "missed"):  # exported at 0 before the first one
        assert scheduler[f'connect_scheduler_fires_total{{outcome="{outcome}"}}'] == 0
    assert scheduler["connect_outbox_backlog"] == 0

    executor_zeros = ('connect_runs_total{job_type="export",status="failed",trigger="scheduled"}',
                      'connect_records_processed_total{job_type="export",outcome="exported"}',
                      'connect_sftp_bytes_total{direction="write"}')  # fmt: skip
    assert all(executor[key] == 0 for key in executor_zeros)

    catalog = by_service["catalog"]
    created = 'connect_http_requests_total{method="POST",route="/api/v1/jobs",status="201"}'
    assert catalog[created] == 1
    polled = total(catalog, "connect_http_requests_total", route="/api/v1/runs/{run_id}", method="GET")
    assert polled >= 1  # wait_for_run's polls, by route template: no run id in any label
    assert not any("/api/v1/runs/" in key and "{run_id}" not in key for key in catalog if "route=" in key)
    assert (
        total(catalog, "connect_http_request_duration_seconds_count", route="/api/v1/jobs", method="POST")
        == 1
    )
    assert catalog["connect_outbox_backlog"] == 0

    logsink = by_service["logsink"]
    assert logsink['connect_logsink_duplicates_total{type="run.finished"}'] == 0  # exported from the start
    assert total(logsink, "connect_logsink_events_total", type="run.requested") == 1
    assert total(logsink, "connect_logsink_events_total", type="run.started") == 1
    assert total(logsink, "connect_logsink_events_total", type="run.finished") == 1
    assert total(logsink, "connect_logsink_events_total", type="run.log") == run["last_log_seq"]
    assert total(logsink, "connect_logsink_batch_seconds_count") >= 1
    assert total(logsink, "faststream_received_messages_total") >= 3 + run["last_log_seq"]


async def _text(processes: SystemProcesses, service: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{processes.processes[service].url}/metrics")).text


async def test_every_service_logs_json_lines_with_service_run_and_job(
    system: RunningSystem, scheduled_run: dict[str, Any]
) -> None:
    run_id, job_id = scheduled_run["run"]["run_id"], scheduled_run["job_id"]
    await asyncio.sleep(0.5)  # let the last lines reach the files
    for service in SERVICES:
        process = system.processes.processes[service]
        lines = current_process_lines(process.log_path.read_text().splitlines(), process.process.pid)
        assert lines, f"{service} logged nothing"
        records = []
        for text in lines:
            record = json.loads(text)  # every line on stdout is JSON
            assert {"service", "run_id", "job_id", "level", "event", "time"} <= set(record), text
            assert record["service"] == service
            assert record["level"] in {"debug", "info", "warning", "error", "critical"}
            records.append(record)
        if service == "executor":
            about_run = [r for r in records if r["run_id"] == run_id]
            assert about_run, "the executor's lines during the run carry its run_id"
            assert all(r["job_id"] == job_id for r in about_run)


def current_process_lines(lines: list[str], pid: int) -> list[str]:
    """The lines of this process (log files are appended to across test sessions)."""
    marker = f"Started server process [{pid}]"
    starts = [i for i, line in enumerate(lines) if marker in line]
    assert starts, f"no start-up line of process {pid}"
    return lines[starts[-1] :]


async def test_the_run_log_streams_over_sse_and_ends(
    system: RunningSystem, scheduled_run: dict[str, Any]
) -> None:
    run = scheduled_run["run"]
    headers = {"Authorization": f"Bearer {system.token}"}
    events: list[tuple[str, dict[str, Any]]] = []
    started = time.monotonic()
    async with (
        httpx.AsyncClient(base_url=system.api_url, headers=headers, timeout=30) as api,
        api.stream("GET", f"/runs/{run['run_id']}/logs/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        async for text in response.aiter_lines():
            if text.startswith("event: "):
                kind = text.removeprefix("event: ")
            elif text.startswith("data: ") and kind:
                events.append((kind, json.loads(text.removeprefix("data: "))))
    assert time.monotonic() - started < 20
    seqs = [data["seq"] for kind, data in events if kind == "line"]
    assert seqs == list(range(1, run["last_log_seq"] + 1))
    assert events[-1] == ("end", {"status": "succeeded", "last_log_seq": run["last_log_seq"]})


async def test_every_service_exports_its_event_loop_lag(
    system: RunningSystem, scheduled_run: dict[str, Any]
) -> None:
    """Each process (the logsink's lean consumer too) measures its loop from the start."""
    assert scheduled_run["run"]["status"] == "succeeded"
    for service in SERVICES:
        text = await _text(system.processes, service)
        assert "# TYPE connect_event_loop_lag_seconds histogram" in text, service
        samples = scrape(text)
        observed = total(samples, "connect_event_loop_lag_seconds_count", service=service)
        assert observed > 0, f"{service} has not observed its loop lag"
        assert total(samples, "connect_event_loop_lag_seconds_bucket", service=service, le="+Inf") == observed
