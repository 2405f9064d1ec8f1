"""One trace per run across the four service processes (shared/tracing.py): tracing on through the standard
OTEL_* variables, each process exports OTLP/HTTP (protobuf) to a receiver on loopback, and a Run now yields
one connected trace — the API request's span its root, every other span's parent in it — with spans of the
catalog, the scheduler, the executor and the logsink."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from services.dev.processes import SystemProcesses
from shared.settings import CommonSettings
from tests.e2e.test_import_run import write_csv
from tests.support.api import contacts_table, import_job, wait_for_run
from tests.support.receivers import WebhookReceiver
from tests.support.servers import Sshd
from tests.support.system import admin_api, isolated_settings, service_env, start_services, started_system
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e
SERVICES = ("catalog", "scheduler", "executor", "logsink")


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root


def spans_of(receiver: WebhookReceiver) -> list[Span]:
    """Every span the processes exported so far, decoded from the OTLP protobuf requests."""
    found = []
    for request in receiver.requests:
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    found.append(
                        Span(
                            attributes["service.name"],
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                        )
                    )
    return found


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as collector:  # answers 200 to every POST /v1/traces
        yield collector


@pytest.fixture(scope="module")
def traced(
    amqp_url: str, mongo_url: str, receiver: WebhookReceiver
) -> Iterator[tuple[SystemProcesses, CommonSettings]]:
    settings = isolated_settings(amqp_url, mongo_url, "t")
    env = service_env(
        settings,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="200",  # export within a fraction of a second, not the default 5 s
    )
    with started_system(settings, env, start_services(*SERVICES)) as system:
        yield system, settings


@pytest.mark.timeout(120)
async def test_a_run_now_is_one_connected_trace_across_the_four_processes(
    traced: tuple[SystemProcesses, CommonSettings], receiver: WebhookReceiver, sshd: Sshd, unique: str
) -> None:
    system, settings = traced
    async with admin_api(system, settings) as api:
        connection = await api.post("/connections", json={
            "name": f"sshd-{unique}", "host": sshd.host, "port": sshd.port, "username": sshd.username,
            "private_key": sshd.private_key, "host_key": sshd.host_key, "base_dir": str(sshd.root),
        })  # fmt: skip
        assert connection.status_code == 201, connection.text
        table = f"contacts_{unique}"
        assert (await api.post("/tables", json=contacts_table(table))).status_code == 201
        write_csv(sshd, f"{unique}/contacts.csv", [["id", "email", "points"], ["C1", "a@example.com", "5"]])
        job = await api.post(
            "/jobs",
            json=import_job(f"traced {unique}", connection.json()["id"], f"{unique}/contacts.csv", table),
        )
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        answer = await api.post(f"/jobs/{job_id}/run")
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        run = await wait_for_run(api, run_id, timeout=60)
        assert run["status"] == "succeeded", run

    def run_trace() -> list[Span] | None:
        spans = spans_of(receiver)
        roots = [
            s for s in spans if s.service == "connect-catalog" and s.name == "POST /api/v1/jobs/{job_id}/run"
        ]
        if len(roots) != 1:
            return None
        trace = [s for s in spans if s.trace_id == roots[0].trace_id]
        ids = {s.span_id for s in trace}
        # Each process exports in its own batches: a child may arrive before its parent from another
        # process, so the trace is complete once every parent link leads to a span of it.
        orphans = [s for s in trace if s.parent_id and s.parent_id not in ids]
        every_service = {s.service for s in trace} == {f"connect-{name}" for name in SERVICES}
        return trace if every_service and not orphans else None

    trace = await eventually(
        run_trace, what="the run's spans from all four processes, in one trace, every parent among them"
    )
    assert trace is not None
    ids = {s.span_id for s in trace}
    roots = [s for s in trace if not s.parent_id]
    assert [r.name for r in roots] == ["POST /api/v1/jobs/{job_id}/run"], roots  # the request: the only root
    by_service = {s.service: s for s in trace}
    assert all(f"connect-{name}" in by_service for name in SERVICES)
    logsink = [s for s in trace if s.service == "connect-logsink"]
    parents = {s.span_id: s for s in trace}
    # The logsink records what the scheduler (run requested) and the executor (the run's events) published.
    assert {parents[s.parent_id].service for s in logsink} == {"connect-scheduler", "connect-executor"}
    executor = [s for s in trace if s.service == "connect-executor"]
    assert {
        parents[s.parent_id].service for s in executor if parents[s.parent_id].service != "connect-executor"
    } == {
        "connect-scheduler"
    }  # the RunRequested, published from the scheduler's outbox in the request's trace

    # The JSON logs name the span they were written in: the executor's "run finished" line is in the trace.
    log = Path("test-artifacts") / "e2e-logs" / settings.db_prefix / "executor.log"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    finished = [line for line in lines if line["event"] == "run finished" and line["run_id"] == run_id]
    assert [line["trace_id"] for line in finished] == [roots[0].trace_id], finished
    assert finished[0]["span_id"] in ids
