"""Differential property tests of exports: the real executor export (real database, real sshd, a real HTTP
receiver on loopback) against the reference model in `tests/model/export_model.py`.

Each example seeds tables the way the executor stores them (field values, absent when empty, plus `_cx_run`
and `_cx_at`), runs an export job and compares what arrived — the SFTP file byte for byte (gunzipped), or
the REST batches — with the model. Example counts: `examples(N)` (`CONNECT_DEEP=1` for the long run).
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from services.executor.service import ExecutorService
from shared.contracts.jobs import CsvFormat, ExportSpec, RestDestination, SftpDestination
from shared.contracts.runs import RunFinished, RunStatus
from shared.mongo import free_port
from tests.conftest import DEEP, examples
from tests.integration.test_export_model_cases import (
    Case,
    incremental_changes,
    list_cases,
    rest_cases,
    table_cases,
)
from tests.model.export_model import ModelTable, csv_file, expected, rest_batches
from tests.support.executor_harness import Harness
from tests.support.waiting import eventually

_job_ids = itertools.count(5000)
pytestmark = pytest.mark.timeout(7200 if DEEP else 180)  # the deep run draws 20x the examples
TOKEN = "model-token"


class Receiver:
    """A Responsys-like merge-list-members endpoint that accepts everything and keeps each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (list name, authorization, body)
        self.app = FastAPI()

        @self.app.post("/rest/api/v1.3/lists/{name}/members")
        async def merge(name: str, request: Request) -> Response:
            self.requests.append((name, request.headers.get("authorization", ""), await request.json()))
            return Response(media_type="application/json", content=b'{"recordData": {"records": []}}')


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app.app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="the server started", timeout=10)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


class Executor:
    """One harness and one executor shared by all examples of a test (every example has its own tables)."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.service: ExecutorService | None = None
        self.catalogued: set[str] = set()
        self.rest_ready = False

    async def start(self) -> ExecutorService:
        if self.service is None:
            await self.h.connection()
            self.service = self.h.service(batch_size=4)
        return self.service

    async def seed(self, tables: dict[str, ModelTable]) -> None:
        for table in tables.values():
            if table.name not in self.catalogued:
                fields = [f.model_dump() for f in table.fields]
                await self.h.table(table.name, fields, kind=table.kind, primary_key=table.primary_key,
                                   parent_list=table.parent_list)  # fmt: skip
                self.catalogued.add(table.name)
            if table.rows:
                docs = [{**row, "_cx_run": "0.1"} for row in table.rows]
                await self.h.audience[f"table_{table.name}"].insert_many(docs)

    async def export(self, spec: ExportSpec, job_id: int, run: int = 1) -> RunFinished:
        service = await self.start()
        return await self.h.run(spec.model_dump(mode="json"), service=service, job_id=job_id, run=run)

    async def watermark(self, job_id: int) -> datetime:
        doc = await self.h.mongo[self.h.settings.database("executor")]["export_watermarks"].find_one(
            {"_id": job_id}
        )
        assert doc is not None, "a successful incremental run leaves a watermark"
        return doc["since"]  # type: ignore[no-any-return]

    def path(self, spec: ExportSpec, job_id: int, run: int) -> Path:
        assert isinstance(spec.destination, SftpDestination)
        return self.h.root / (f"out/e{job_id}_{job_id}.{run}.csv" + (".gz" if spec.destination.gzip else ""))

    def file(self, spec: ExportSpec, job_id: int, run: int = 1) -> bytes:
        path, name = self.path(spec, job_id, run), f"run {run}"
        assert isinstance(spec.destination, SftpDestination)
        assert path.with_name(path.name + ".ready").exists() == spec.destination.ready_file, name
        assert not list(path.parent.glob("*.part")), "the temporary name is renamed away"
        data = path.read_bytes()
        return gzip.decompress(data) if spec.destination.gzip else data


def sftp_spec(case: Case, job_id: int) -> ExportSpec:
    destination = {
        "kind": "sftp",
        "connection_id": 1,
        "path_template": "out/e{job_id}_{run_id}.csv",
        **case.sftp,
    }
    return ExportSpec.model_validate({**case.spec, "destination": destination})


def _show(data: bytes, fmt: CsvFormat) -> list[str]:
    return data.decode(fmt.encoding, errors="replace").split("\r\n")


async def check_file(executor: Executor, case: Case, spec: ExportSpec, job_id: int, run: int,
                     watermark: datetime | None) -> RunFinished:  # fmt: skip
    finished = await executor.export(spec, job_id, run)
    assert finished.data.status == RunStatus.SUCCEEDED, finished.data.error
    model = expected(spec, case.tables, watermark)
    want, got = csv_file(model, spec.format), executor.file(spec, job_id, run)
    assert _show(got, spec.format) == _show(want, spec.format)
    assert got == want
    assert finished.data.counts.read == len(model.records)
    assert finished.data.counts.inserted == len(model.records) and finished.data.counts.rejected == 0
    return finished


@settings(max_examples=examples(50))
@given(case=list_cases())
async def test_list_exports_to_sftp_match_the_model(harness: Harness, case: Case) -> None:
    executor = _executor(harness)
    note(repr(case))
    job_id = next(_job_ids)
    await executor.seed(case.tables)
    spec = sftp_spec(case, job_id)
    event(
        f"list: filter={spec.source.filter is not None} extension={bool(case.spec['source']['extension_fields'])}"
    )
    await check_file(executor, case, spec, job_id, 1, None)


@settings(max_examples=examples(30))
@given(case=table_cases())
async def test_table_exports_to_sftp_match_the_model(harness: Harness, case: Case) -> None:
    executor = _executor(harness)
    note(repr(case))
    job_id = next(_job_ids)
    await executor.seed(case.tables)
    spec = sftp_spec(case, job_id)
    event(f"table: {case.tables[spec.source.table].kind}")
    await check_file(executor, case, spec, job_id, 1, None)


@settings(max_examples=examples(25))
@given(case=list_cases(incremental=True) | table_cases(incremental=True), data=st.data())
async def test_incremental_exports_send_what_changed_since_the_last_success(
    harness: Harness, case: Case, data: st.DataObject
) -> None:
    executor = _executor(harness)
    note(repr(case))
    job_id = next(_job_ids)
    await executor.seed(case.tables)
    spec = sftp_spec(case, job_id)
    event(f"incremental: {case.tables[spec.source.table].kind}")
    first = await check_file(executor, case, spec, job_id, 1, None)
    watermark = await executor.watermark(job_id)  # the documented store of "the start of the last success"
    assert first.data.started_at - timedelta(seconds=5) <= watermark <= first.data.finished_at
    now = datetime.now(UTC) + timedelta(milliseconds=5)
    changes = data.draw(incremental_changes(case, watermark, now))
    await executor.seed(changes.inserted)
    for name, key, values in changes.updates:
        await harness.audience[f"table_{name}"].update_one(key, {"$set": values})
    run = 2
    if data.draw(st.booleans(), label="a failed run in between"):
        event("incremental: a failed run in between")
        executor.path(spec, job_id, run).mkdir(parents=True)  # a folder where the file goes: the run fails
        failed = await executor.export(spec, job_id, run)
        assert failed.data.status == RunStatus.FAILED
        assert await executor.watermark(job_id) == watermark, "only a successful run advances the watermark"
        run = 3
    await check_file(executor, changes.after, spec, job_id, run, watermark)


@settings(max_examples=examples(30))
@given(case=rest_cases())
async def test_rest_exports_send_the_model_batches(
    harness: Harness, receiver: tuple[Receiver, str], case: Case
) -> None:
    executor = _executor(harness)
    note(repr(case))
    app, url = receiver
    if not executor.rest_ready:
        await executor.start()
        await harness.rest_connection(2, url, TOKEN)
        executor.rest_ready = True
    job_id = next(_job_ids)
    await executor.seed(case.tables)
    spec = ExportSpec.model_validate(case.spec)
    assert isinstance(spec.destination, RestDestination)
    event(f"rest: batch_size={'200' if spec.destination.batch_size == 200 else 'small'}")
    app.requests.clear()
    finished = await executor.export(spec, job_id)
    assert finished.data.status == RunStatus.SUCCEEDED, finished.data.error
    model = expected(spec, case.tables, None)
    want = rest_batches(model, spec.destination)
    assert [(name, auth) for name, auth, _ in app.requests] == [(spec.destination.list_name, TOKEN)] * len(
        want
    )
    got = [{"recordData": {k: b["recordData"][k] for k in ("fieldNames", "records")},
            "mergeRule": {"matchColumnName1": b.get("mergeRule", {}).get("matchColumnName1")}}
           for _, _, b in app.requests]  # fmt: skip
    assert got == want
    assert finished.data.counts.read == len(model.records) == finished.data.counts.inserted


_executors: dict[int, Executor] = {}


def _executor(h: Harness) -> Executor:
    """The examples of one test share its harness (a function-scoped fixture), hence one Executor per harness."""
    found = _executors.get(id(h))
    if found is None or found.h is not h:
        found = _executors[id(h)] = Executor(h)
    return found
