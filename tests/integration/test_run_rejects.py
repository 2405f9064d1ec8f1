"""Rejected records where people look: an executor run keeps each reject's raw record, the catalog's
`GET /runs/{run_id}/rejects` pages through them (viewer role, 404 for an unknown run)."""

from __future__ import annotations

from typing import Any

import pytest

from services.catalog.domain import Role
from services.executor.domain import Rejection
from services.executor.repository import MongoRejectStore
from shared.contracts import RunFinished
from shared.contracts.runs import RunStatus
from tests.integration import test_import_partner_feed as feed_tests
from tests.support.catalog_api import Api, running_catalog
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
    read_csv,
)

LONG = "x" * 1500


async def record_run(h: Harness, finished: RunFinished) -> None:
    """The run as the logsink records it (the catalog's runs read model)."""
    data = finished.data
    job_id, number = (int(part) for part in data.run_id.split("."))
    await h.mongo[h.settings.database("logsink")]["runs"].insert_one(
        {"_id": data.run_id, "job_id": job_id, "run_number": number, "status": data.status.value,
         "counts": data.counts.model_dump()}
    )  # fmt: skip


async def rejects(api: Api, run_id: str, role: Role = Role.VIEWER, **params: Any) -> Any:
    return await api.ok("GET", f"/runs/{run_id}/rejects", role, params=params)


async def test_rejects_of_a_run_with_their_raw_records_paged_by_offset_and_cursor(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("in.csv", csv_text([
        ["id", "email", "points"],
        ["C1", "c1@example.com", "1"],
        ["C2", "c2@example.com"],  # line 3: one column short
        ["C3", "not, an email", "3"],  # line 4: a bad value holding the delimiter
        ["C4", "c4@example.com", LONG],  # line 5: a bad value longer than the kept record
        ["C5", "c5@example.com", "5"],
    ]))  # fmt: skip
    spec = import_spec("in.csv", {"kind": "custom", "table": "contacts", "mode": "merge"}, CONTACT_MAPPING)
    finished = await h.run(spec, job_id=31)
    assert finished.data.status == RunStatus.PARTIAL and finished.data.counts.rejected == 3
    await record_run(h, finished)
    assert read_csv(h.root / "in.csv.31.1.rejects.csv")[0] == ["line", "field", "reason"]  # unchanged

    async with running_catalog(h.settings, h.mongo, with_scheduler=False) as api:
        page = await rejects(api, "31.1")
        assert page["total"] == 3 and page["next_after"] is None and page["run_id"] == "31.1"
        assert [(r["file"], r["line"], r["field"]) for r in page["items"]] == [
            (1, 3, "columns"), (1, 4, "email"), (1, 5, "points")
        ]  # fmt: skip
        short, quoted, long = page["items"]
        assert short["record"] == "C2,c2@example.com" and "expected 3 columns" in short["reason"]
        assert quoted["record"] == 'C3,"not, an email",3' and "email" in quoted["reason"]
        whole = f"C4,c4@example.com,{LONG}"
        assert long["record"] == f"{whole[:1000]}… [cut: {len(whole):,} characters]"

        first = await rejects(api, "31.1", limit=2)
        assert [r["line"] for r in first["items"]] == [3, 4] and first["next_after"] == "1:4"
        rest = await rejects(api, "31.1", limit=2, after=first["next_after"])
        assert [r["line"] for r in rest["items"]] == [5] and rest["next_after"] is None
        assert rest["total"] == 3
        by_offset = await rejects(api, "31.1", limit=2, offset=2)
        assert [r["line"] for r in by_offset["items"]] == [5]


async def test_rejects_from_the_target_carry_the_record_too(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", [{"name": "CITY", "type": "string"}], kind="list")
    h.write("new.csv", csv_text([["email", "city"], ["zed@example.com", "Zug"]]))
    mapping = [("email", "EMAIL_ADDRESS_"), ("city", "CITY")]
    target = {
        "kind": "list",
        "table": "people",
        "match_columns": ["EMAIL_ADDRESS_"],
        "insert_on_no_match": False,
    }
    finished = await h.run(import_spec("new.csv", target, mapping), job_id=32)
    assert finished.data.status == RunStatus.PARTIAL
    await record_run(h, finished)
    async with running_catalog(h.settings, h.mongo, with_scheduler=False) as api:
        (reject,) = (await rejects(api, "32.1"))["items"]
    assert reject["line"] == 2 and reject["record"] == "zed@example.com,Zug"
    assert "insert_on_no_match" in reject["reason"]


async def test_unknown_runs_bad_cursors_and_missing_tokens_are_refused(harness: Harness) -> None:
    h = harness
    store = MongoRejectStore(h.mongo, h.settings.database("executor"))
    await store.ensure_indexes()
    await store.save("7.1", [Rejection(2, "email", "'x' is not an email address", 0, record="x,1")])
    await h.mongo[h.settings.database("logsink")]["runs"].insert_one(
        {"_id": "7.2", "job_id": 7, "run_number": 2, "status": "succeeded"}
    )
    async with running_catalog(h.settings, h.mongo, with_scheduler=False) as api:
        unknown = await api.call("GET", "/runs/7.1/rejects", Role.VIEWER)  # rejects, but no run record
        assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "run_id"
        assert (await api.call("GET", "/runs/not-a-run/rejects", Role.VIEWER)).status_code == 404
        assert (await api.call("GET", "/runs/7.2/rejects", None)).status_code == 401
        none = await rejects(api, "7.2")
        assert none == {
            "run_id": "7.2",
            "items": [],
            "total": 0,
            "offset": 0,
            "limit": 100,
            "next_after": None,
            "next": None,
            "prev": None,
        }
        bad = await api.call("GET", "/runs/7.2/rejects", Role.VIEWER, params={"after": "0:1"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "after"
        too_many = await api.call("GET", "/runs/7.2/rejects", Role.VIEWER, params={"limit": 5000})
        assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "limit"
        spec = await api.ok("GET", "/openapi.json", None)
    operation = spec["paths"]["/api/v1/runs/{run_id}/rejects"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "RunRejectPage"
    )
    assert {"file", "line", "field", "reason", "record"} <= set(
        spec["components"]["schemas"]["RunReject"]["properties"]
    )
    assert "404" in operation["responses"]


async def test_the_cursor_pages_across_the_files_of_a_run(harness: Harness) -> None:
    h = harness
    store = MongoRejectStore(h.mongo, h.settings.database("executor"))
    await store.ensure_indexes()
    saved = [(1, 3), (0, 5), (0, 2), (1, 2), (2, 9)]  # (file, line), saved in no particular order
    await store.save("8.1", [Rejection(line, "points", "not an integer", file) for file, line in saved])
    await store.save("8.2", [Rejection(4, "points", "not an integer", 0)])  # another run's
    await h.mongo[h.settings.database("logsink")]["runs"].insert_one(
        {"_id": "8.1", "job_id": 8, "run_number": 1, "status": "partial"}
    )
    async with running_catalog(h.settings, h.mongo, with_scheduler=False) as api:
        first = await rejects(api, "8.1", limit=3)
        second = await rejects(api, "8.1", limit=3, after=first["next_after"])
        both = await api.call("GET", "/runs/8.1/rejects", Role.VIEWER, params={"after": "1:2", "offset": 3})
    assert [(r["file"], r["line"]) for r in first["items"]] == [(1, 2), (1, 5), (2, 2)]
    assert first["next_after"] == "2:2" and first["total"] == 5
    assert [(r["file"], r["line"]) for r in second["items"]] == [(2, 3), (3, 9)]
    assert second["next_after"] is None and second["items"][0]["record"] == ""  # stored without one
    assert both.status_code == 422 and both.json()["error"]["field"] == "offset"


async def test_partner_feed_rejects_keep_the_hit_line(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    bad = ["1704067300", "4000", "222", "two", "https://shop.example/cart", "2", "summer"]
    monkeypatch.setattr(feed_tests, "HITS", [feed_tests.HITS[0], bad])
    spec = await feed_tests.setup(h)
    feed_tests.delivery(h)
    finished = await h.run(spec, job_id=33)
    assert finished.data.status == RunStatus.PARTIAL, finished.data.error
    await record_run(h, finished)
    async with running_catalog(h.settings, h.mongo, with_scheduler=False) as api:
        (reject,) = (await rejects(api, "33.1"))["items"]
    assert (reject["line"], reject["field"]) == (2, "visit")
    # Lookup ids of mapped columns are shown translated, as they were validated (2 → Firefox 121).
    assert reject["record"] == "\t".join([*bad[:5], "Firefox 121", "summer"])
