"""What a remote system sends back never carries a connection's secret into runs, logs or events; a REST
export whose every record was refused fails (issue #12, defects 5 and 6)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from shared.contracts.runs import RunStatus
from shared.logging import JsonFormatter
from shared.mongo import free_port
from tests.support.executor_harness import Harness, csv_text, import_spec
from tests.support.waiting import eventually

TOKEN = "tok-S3cr3t/+value=42"
LEAKED_FORMS = (TOKEN, base64.b64encode(TOKEN.encode()).decode(), quote(TOKEN, safe=""))


@dataclass
class EchoingEndpoint:
    """A merge endpoint that answers with the request's Authorization header (and its encodings) echoed."""

    script: list[str] = field(default_factory=list)  # per call: "echo503", "echo400", "mergefailed", "ok"
    calls: int = 0
    app: FastAPI = field(default_factory=FastAPI)

    def __post_init__(self) -> None:
        @self.app.post("/rest/api/v1.3/lists/{name}/members")
        async def merge(name: str, request: Request) -> Response:
            self.calls += 1
            body = await request.json()
            records = body["recordData"]["records"]
            action = self.script.pop(0) if self.script else "ok"
            auth = request.headers.get("authorization", "")
            echo = (f"bad request: Authorization: {auth} (base64 {base64.b64encode(auth.encode()).decode()}, "
                    f"url {quote(auth, safe='')}); body: {json.dumps(body)}")  # fmt: skip
            if action.startswith("echo"):
                return Response(status_code=int(action[4:]), content=echo, headers={"X-Echo": auth})
            if action == "mergefailed":
                answer = [[f"MERGEFAILED: record refused for {auth}"] for _ in records]
            else:
                answer = [[str(i)] for i, _ in enumerate(records, 1)]
            content = json.dumps({"recordData": {"fieldNames": ["RIID_"], "records": answer}})
            return Response(media_type="application/json", content=content)


@pytest.fixture
async def echoing() -> AsyncIterator[tuple[EchoingEndpoint, str]]:
    endpoint = EchoingEndpoint()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(endpoint.app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="the server started", timeout=10)
    yield endpoint, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The executor's JSON log lines, as its stdout would carry them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter("executor"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(previous)


async def people_with_rest_connection(h: Harness, url: str, count: int) -> None:
    await h.connection()
    await h.table("people", [{"name": "FIRST_NAME", "type": "string"}], kind="list")
    rows = [["email", "name"]] + [[f"u{i}@x.io", f"U{i}"] for i in range(count)]
    h.write("people.csv", csv_text(rows))
    target = {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]}
    loaded = await h.run(
        import_spec("people.csv", target, [("email", "EMAIL_ADDRESS_"), ("name", "FIRST_NAME")])
    )
    assert loaded.data.status == RunStatus.SUCCEEDED, loaded.data.error
    await h.rest_connection(2, url, TOKEN)


def rest_export(batch_size: int = 200) -> dict[str, object]:
    destination = {"kind": "rest", "connection_id": 2, "list_name": "MASTER", "batch_size": batch_size}
    source = {"kind": "list", "table": "people"}
    return {"kind": "export", "source": source, "fields": ["EMAIL_ADDRESS_", "FIRST_NAME"],
            "destination": destination}  # fmt: skip


def assert_no_secret(text: str, where: str) -> None:
    for form in LEAKED_FORMS:
        assert form not in text, f"the token ({form}) leaked into {where}: {text[:300]}"


async def test_a_400_echoing_the_authorization_header_leaks_the_token_nowhere(
    harness: Harness, echoing: tuple[EchoingEndpoint, str], json_logs: io.StringIO
) -> None:
    h = harness
    endpoint, url = echoing
    await people_with_rest_connection(h, url, 3)
    endpoint.script = ["echo503", "echo400"]  # a retried 5xx (logged) and then a refusal (the run's error)
    run = await h.run(rest_export(), job_id=90)
    assert endpoint.calls == 2
    assert run.data.status == RunStatus.FAILED
    error = run.data.error or ""
    assert error.startswith("the destination refused all 3 records: batch 1 (3 records) failed: HTTP 400")
    assert "Authorization: ***" in error and "u0@x.io" in error  # the reason stays readable
    assert_no_secret(error, "RunFinished.error")
    for event in h.events.messages:
        assert_no_secret(event.model_dump_json(), f"the published {type(event).__name__}")
    assert any("HTTP 503: bad request: Authorization: ***" in line for line in h.events.logs("90.1"))
    assert_no_secret(json_logs.getvalue(), "the executor's JSON logs")


async def test_every_record_refused_one_by_one_fails_the_run(
    harness: Harness, echoing: tuple[EchoingEndpoint, str]
) -> None:
    h = harness
    endpoint, url = echoing
    await people_with_rest_connection(h, url, 3)
    endpoint.script = ["mergefailed", "mergefailed"]
    run = await h.run(rest_export(batch_size=2), job_id=91)
    assert run.data.status == RunStatus.FAILED
    assert run.data.error == "the destination refused all 3 records: MERGEFAILED: record refused for ***"
    assert (run.data.counts.inserted, run.data.counts.rejected) == (0, 3)


async def test_some_records_refused_is_partial(
    harness: Harness, echoing: tuple[EchoingEndpoint, str]
) -> None:
    h = harness
    endpoint, url = echoing
    await people_with_rest_connection(h, url, 3)
    endpoint.script = ["echo400", "ok"]
    run = await h.run(rest_export(batch_size=2), job_id=92)
    assert run.data.status == RunStatus.PARTIAL
    assert (run.data.counts.inserted, run.data.counts.rejected) == (1, 2)
    assert_no_secret(run.data.error or "", "RunFinished.error")
