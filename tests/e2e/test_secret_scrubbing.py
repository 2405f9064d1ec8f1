"""A REST export whose endpoint echoes the `Authorization` header, through all four services: the token
is in no run record, log line, logsink document or service log (issue #12, defect 5)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from shared.mongo import MongoClient, free_port
from tests.e2e.conftest import RunningSystem
from tests.support.api import wait_for_run
from tests.support.servers import Sshd
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

TOKEN = "e2e-T0ken/with+chars="
FORMS = (TOKEN, base64.b64encode(TOKEN.encode()).decode(), quote(TOKEN, safe=""))


@pytest.fixture
async def echoing_endpoint() -> AsyncIterator[str]:
    app = FastAPI()

    @app.post("/rest/api/v1.3/lists/{name}/members")
    async def merge(name: str, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        encoded = base64.b64encode(auth.encode()).decode()
        text = f"invalid request, you sent Authorization: {auth} ({encoded}, {quote(auth, safe='')})"
        return Response(status_code=400, content=text, headers={"X-Echo": auth})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="the server started", timeout=10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def created(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(path, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def run_to_end(api: httpx.AsyncClient, job_id: int) -> dict[str, Any]:
    assert (await api.post(f"/jobs/{job_id}/run")).status_code == 202
    return await wait_for_run(api, f"{job_id}.1")


async def all_log_lines(api: httpx.AsyncClient, run: dict[str, Any]) -> str:
    """The run's log once the logsink has every line up to the last one the executor numbered."""
    deadline = time.monotonic() + 20
    while True:
        response = await api.get(f"/runs/{run['run_id']}/logs")
        lines = response.json()["lines"]
        if (lines and lines[-1]["seq"] >= run["last_log_seq"]) or time.monotonic() > deadline:
            return response.text
        await asyncio.sleep(0.2)


async def test_an_echoed_token_appears_nowhere(
    api: httpx.AsyncClient, system: RunningSystem, sshd: Sshd, sftp_connection: int, mongo: MongoClient,
    unique: str, echoing_endpoint: str,
) -> None:  # fmt: skip
    people = f"people_{unique}"
    await created(api, "/tables", {"name": people, "kind": "list", "fields": [{"name": "FIRST_NAME"}]})
    (sshd.root / unique).mkdir()
    (sshd.root / unique / "people.csv").write_text("email,name\nann@x.io,Ann\nbob@x.io,Bob\n")
    load = {"kind": "import", "source": {"kind": "sftp", "connection_id": sftp_connection,
            "path": f"{unique}/people.csv"}, "mapping": [{"column": "email", "field": "EMAIL_ADDRESS_"},
            {"column": "name", "field": "FIRST_NAME"}],
            "target": {"kind": "list", "table": people, "match_columns": ["EMAIL_ADDRESS_"]}}  # fmt: skip
    loaded = await run_to_end(
        api, (await created(api, "/jobs", {"name": f"load {unique}", "spec": load}))["id"]
    )
    assert loaded["status"] == "succeeded", loaded
    rest = await created(api, "/connections", {"kind": "rest", "name": f"rest-{unique}",
                                               "base_url": echoing_endpoint, "token": TOKEN})  # fmt: skip
    push = {"kind": "export", "source": {"kind": "list", "table": people}, "fields": ["EMAIL_ADDRESS_"],
            "destination": {"kind": "rest", "connection_id": rest["id"], "list_name": "MASTER"}}  # fmt: skip
    run = await run_to_end(api, (await created(api, "/jobs", {"name": f"push {unique}", "spec": push}))["id"])

    assert run["status"] == "failed"
    assert "the destination refused all 2 records" in run["error"] and "Authorization: ***" in run["error"]
    seen = {"the run record": str(run), "the run's log": await all_log_lines(api, run)}
    logsink = mongo[system.settings.database("logsink")]
    for name in await logsink.list_collection_names():
        seen[f"logsink collection {name}"] = " ".join([str(doc) async for doc in logsink[name].find({})])
    for key, service in system.processes.processes.items():
        seen[f"the {key} log"] = service.log_path.read_text(errors="replace")
    for where, text in seen.items():
        for form in FORMS:
            assert form not in text, f"the token ({form}) leaked into {where}"
