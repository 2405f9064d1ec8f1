"""Exports: byte-exact CSV on SFTP (formula cells neutralised, gzip, ready file), audiences with extension
fields, incremental exports, and a REST push against a local endpoint that answers 429 and 500."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from shared.contracts.runs import RunStatus
from shared.mongo import free_port
from tests.support.executor_harness import Harness, csv_text, import_spec
from tests.support.waiting import eventually

USER_FIELDS = [{"name": "FIRST_NAME", "type": "string"}, {"name": "SCORE", "type": "integer"}]


async def people(h: Harness) -> None:
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    await h.table(
        "prefs", [{"name": "COLOR", "type": "string"}], kind="profile_extension", parent_list="people"
    )
    rows = [["email", "name", "score"], ["ann@x.io", "=SUM(A1)", "5"], ["bob@x.io", "Bob, Jr.", "-3"],
            ["cy@x.io", "@cy", "12"], ["di@x.io", 'Di "D"', ""]]  # fmt: skip
    h.write("people.csv", csv_text(rows))
    mapping = [("email", "EMAIL_ADDRESS_"), ("name", "FIRST_NAME"), ("score", "SCORE")]
    target = {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]}
    assert (await h.run(import_spec("people.csv", target, mapping))).data.status == RunStatus.SUCCEEDED
    h.write("prefs.csv", csv_text([["email", "color"], ["bob@x.io", "+red"], ["cy@x.io", "blue"]]))
    pet = {"kind": "profile_extension", "table": "prefs", "match_column": "EMAIL_ADDRESS_"}
    loaded = await h.run(import_spec("prefs.csv", pet, [("email", "EMAIL_ADDRESS_"), ("color", "COLOR")]))
    assert loaded.data.status == RunStatus.SUCCEEDED


def export_spec(destination: dict[str, Any], fields: list[str], **source: Any) -> dict[str, Any]:
    return {"kind": "export", "source": {"kind": "list", "table": "people", **source}, "fields": fields,
            "destination": destination}  # fmt: skip


async def test_sftp_export_is_byte_exact_with_formula_cells_neutralised(harness: Harness) -> None:
    h = harness
    await people(h)
    destination = {
        "kind": "sftp",
        "connection_id": 1,
        "path_template": "out/people_{run_id}.csv",
        "ready_file": True,
    }
    run = await h.run(export_spec(destination, ["RIID_", "EMAIL_ADDRESS_", "FIRST_NAME", "SCORE"]), job_id=70)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert run.data.counts.read == 4
    assert (h.root / "out/people_70.1.csv").read_bytes() == (
        b"RIID_,EMAIL_ADDRESS_,FIRST_NAME,SCORE\r\n"
        b"1,ann@x.io,'=SUM(A1),5\r\n"
        b'2,bob@x.io,"Bob, Jr.",\'-3\r\n'
        b"3,cy@x.io,'@cy,12\r\n"
        b'4,di@x.io,"Di ""D""",\r\n'
    )
    assert (h.root / "out/people_70.1.csv.ready").exists()
    assert not list((h.root / "out").glob("*.part"))


async def test_audience_filter_with_extension_fields_gzip_and_semicolons(harness: Harness) -> None:
    h = harness
    await people(h)
    destination = {"kind": "sftp", "connection_id": 1, "path_template": "out/aud_{job_id}.csv", "gzip": True}
    audience = {"match": "all", "conditions": [{"field": "prefs.COLOR", "op": "exists"},
                                               {"field": "SCORE", "op": "lt", "value": 10}]}  # fmt: skip
    spec = export_spec(destination, ["EMAIL_ADDRESS_", "COLOR"], filter=audience,
                       extension_fields=[{"table": "prefs", "fields": ["COLOR"]}])  # fmt: skip
    spec["format"] = {"delimiter": ";"}
    run = await h.run(spec, job_id=71)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert gzip.decompress((h.root / "out/aud_71.csv.gz").read_bytes()) == (
        b"EMAIL_ADDRESS_;COLOR\r\nbob@x.io;'+red\r\n"
    )


async def test_incremental_export_sends_only_records_changed_since_the_last_success(harness: Harness) -> None:
    h = harness
    await people(h)
    destination = {"kind": "sftp", "connection_id": 1, "path_template": "out/inc_{run_id}.csv"}
    spec = export_spec(destination, ["EMAIL_ADDRESS_", "SCORE"], incremental=True)
    first = await h.run(spec, job_id=72, run=1)
    assert first.data.counts.read == 4
    empty = await h.run(spec, job_id=72, run=2)
    assert (
        h.root / "out/inc_72.2.csv"
    ).read_bytes() == b"EMAIL_ADDRESS_,SCORE\r\n" and empty.data.counts.read == 0
    h.write(
        "change.csv",
        csv_text([["email", "name", "score"], ["cy@x.io", "Cy", "13"], ["eve@x.io", "Eve", "1"]]),
    )
    target = {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]}
    mapping = [("email", "EMAIL_ADDRESS_"), ("name", "FIRST_NAME"), ("score", "SCORE")]
    await h.run(import_spec("change.csv", target, mapping))
    third = await h.run(spec, job_id=72, run=3)
    assert (
        h.root / "out/inc_72.3.csv"
    ).read_bytes() == b"EMAIL_ADDRESS_,SCORE\r\ncy@x.io,13\r\neve@x.io,1\r\n"
    assert third.data.counts.read == 2


class Endpoint:
    """A Responsys-like merge endpoint that fails on purpose: 429 then 500 for some batches."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (batch size, status)
        self.received: list[list[str]] = []
        self.script: list[int] = []
        self.app = FastAPI()

        @self.app.post("/rest/api/v1.3/lists/{name}/members")
        async def merge(name: str, request: Request) -> Response:
            body = await request.json()
            records = body["recordData"]["records"]
            assert request.headers["authorization"] == "secret-token" and name == "MASTER"
            status = self.script.pop(0) if self.script else 200
            self.calls.append((len(records), status))
            if status != 200:
                return Response(status_code=status, content=f"injected {status}",
                                headers={"Retry-After": "0"} if status == 429 else {})  # fmt: skip
            self.received += records
            return Response(media_type="application/json",
                            content=b'{"recordData": {"fieldNames": ["RIID_"], "records": []}}')  # fmt: skip


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, str]]:
    app = Endpoint()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app.app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, what="the server started", timeout=10)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_rest_push_in_batches_retries_429_and_5xx_and_records_a_failed_batch(
    harness: Harness, endpoint: tuple[Endpoint, str]
) -> None:
    h = harness
    app, url = endpoint
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    rows = [["email", "name", "score"]] + [[f"u{i:03d}@x.io", f"=U{i}", str(i)] for i in range(450)]
    h.write("many.csv", csv_text(rows))
    target = {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]}
    mapping = [("email", "EMAIL_ADDRESS_"), ("name", "FIRST_NAME"), ("score", "SCORE")]
    await h.run(import_spec("many.csv", target, mapping))
    await h.rest_connection(2, url, "secret-token")
    # batch 1: 429 then ok; batch 2: 500 four times (all attempts) → failed; batch 3: 503 then ok.
    app.script = [429, 200, 500, 500, 500, 500, 503, 200]
    destination = {"kind": "rest", "connection_id": 2, "list_name": "MASTER", "batch_size": 200}
    run = await h.run(export_spec(destination, ["EMAIL_ADDRESS_", "FIRST_NAME"]), job_id=80)
    assert app.calls == [
        (200, 429),
        (200, 200),
        (200, 500),
        (200, 500),
        (200, 500),
        (200, 500),
        (50, 503),
        (50, 200),
    ]
    assert run.data.status == RunStatus.PARTIAL
    counts = run.data.counts
    assert (counts.read, counts.inserted, counts.updated, counts.rejected) == (450, 250, 0, 200)
    assert run.data.error == "1 batch(es) failed; first: batch 2 (200 records) failed: HTTP 500: injected 500"
    assert app.received[0] == ["u000@x.io", "=U0"]  # a REST push sends values as they are
    assert len(app.received) == 250
    logs = h.events.logs("80.1")
    assert any(line.startswith("batch 2 (200 records) failed: HTTP 500") for line in logs)


STOCK_FIELDS = [{"name": "SKU", "type": "string", "required": True},
                {"name": "REGION", "type": "string", "required": True}, {"name": "ADDED", "type": "date"},
                {"name": "SEEN", "type": "timestamp"}, {"name": "PRICE", "type": "number"}]  # fmt: skip


async def stock(h: Harness) -> None:
    """A custom table keyed by two fields, loaded in an order that is neither key's order."""
    await h.connection()
    await h.table("stock", STOCK_FIELDS, primary_key=("SKU", "REGION"))
    rows = [["sku", "region", "added", "seen", "price"],
            ["b", "US", "2024-02-29", "2024-03-01T00:00:00Z", "-3"], ["a", "US", "2024-01-02", "", "2.5"],
            ["b", "EU", "", "2024-03-01T08:30:00Z", ""], ["a", "EU", "2023-12-31", "", "-3.5"]]  # fmt: skip
    h.write("stock.csv", csv_text(rows))
    mapping = [("sku", "SKU"), ("region", "REGION"), ("added", "ADDED"), ("seen", "SEEN"), ("price", "PRICE")]
    loaded = await h.run(import_spec("stock.csv", {"kind": "custom", "table": "stock"}, mapping))
    assert loaded.data.status == RunStatus.SUCCEEDED, loaded.data.error


async def test_imported_dates_export_as_dates_and_midnight_timestamps_as_timestamps(harness: Harness) -> None:
    h = harness
    await stock(h)
    destination = {"kind": "sftp", "connection_id": 1, "path_template": "out/stock_{run_id}.csv"}
    spec = {"kind": "export", "source": {"kind": "table", "table": "stock"}, "destination": destination}
    run = await h.run(spec, job_id=90)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert (h.root / "out/stock_90.1.csv").read_bytes() == (
        b"SKU,REGION,ADDED,SEEN,PRICE\r\n"
        b"a,EU,2023-12-31,,'-3.5\r\n"
        b"a,US,2024-01-02,,2.5\r\n"
        b"b,EU,,2024-03-01T08:30:00+00:00,\r\n"
        b"b,US,2024-02-29,2024-03-01T00:00:00+00:00,'-3\r\n"  # -3 stored as a number is neutralised too
    )


async def test_table_export_in_key_order_writes_one_bom_across_batches(harness: Harness) -> None:
    h = harness
    await stock(h)
    destination = {"kind": "sftp", "connection_id": 1, "path_template": "out/keys_{run_id}.csv"}
    spec = {"kind": "export", "source": {"kind": "table", "table": "stock"}, "fields": ["SKU", "REGION"],
            "format": {"encoding": "utf-8-sig"}, "destination": destination}  # fmt: skip
    run = await h.run(spec, job_id=91, service=h.service(batch_size=1))
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert (
        h.root / "out/keys_91.1.csv"
    ).read_bytes() == "SKU,REGION\r\na,EU\r\na,US\r\nb,EU\r\nb,US\r\n".encode("utf-8-sig")


async def test_a_value_the_file_encoding_cannot_write_fails_the_export_and_leaves_no_file(
    harness: Harness,
) -> None:
    """Never a silent `?`: the run fails naming the column and the character, and no file is published."""
    h = harness
    await people(h)
    destination = {"kind": "sftp", "connection_id": 1, "path_template": "out/latin_{run_id}.csv"}
    spec = export_spec(destination, ["EMAIL_ADDRESS_", "FIRST_NAME"]) | {"format": {"encoding": "latin-1"}}
    written = await h.run(spec, job_id=92)
    assert written.data.status == RunStatus.SUCCEEDED, written.data.error  # these names fit latin-1

    h.write("more.csv", csv_text([["email", "name", "score"], ["om@x.io", "Ωmega", "1"]]))
    target = {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]}
    mapping = [("email", "EMAIL_ADDRESS_"), ("name", "FIRST_NAME"), ("score", "SCORE")]
    assert (await h.run(import_spec("more.csv", target, mapping))).data.status == RunStatus.SUCCEEDED
    failed = await h.run(spec, job_id=93)

    assert failed.data.status == RunStatus.FAILED
    assert failed.data.error is not None
    assert (
        "FIRST_NAME" in failed.data.error and "U+03A9" in failed.data.error and "latin-1" in failed.data.error
    )
    assert sorted(p.name for p in (h.root / "out").iterdir()) == ["latin_92.1.csv"]  # no file, no `.part`
