"""API answers (issue #19) on the real database: every validation problem listed, each naming its field;
one rule for DELETE (204, then 404); every list paged with `total` and `next`/`prev` links that keep the
filters (also in the `Link` header), and a limit beyond the largest refused."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.catalog.domain import Role
from shared.collections import ExecutorCollections, LogsinkCollections
from shared.mongo import MongoClient
from shared.runlogs import chunk_lines
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import FAKE_HOST_KEY, Api, running_catalog, sftp_connection
from tests.support.gpg import Gpg

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


# --- validation errors ------------------------------------------------------------------------------


async def test_a_body_with_three_bad_fields_gets_three_errors_each_naming_its_field(api: Api) -> None:
    body = {"kind": "sftp", "name": "", "host": "not a host!", "port": 70000, "username": "u",
            "password": "p", "host_key": FAKE_HOST_KEY}  # fmt: skip
    response = await api.call("POST", "/connections", json=body)
    assert response.status_code == 422
    answer = response.json()
    assert sorted(e["field"] for e in answer["errors"]) == ["host", "name", "port"]
    for error in answer["errors"]:
        assert error["code"] == "validation_failed" and error["message"].startswith(f"{error['field']}: ")
    assert answer["error"] == answer["errors"][0]  # the first, as clients that read one problem know it
    assert (await api.ok("GET", "/connections"))["total"] == 0


async def test_a_job_breaking_several_rules_is_told_each(api: Api) -> None:
    connection_id = await sftp_connection(api)
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    job = import_job("several", connection_id, "a.csv", "contacts")
    job["spec"]["mapping"] += [
        {"column": "a", "field": "nope"},
        {"column": "b", "field": "gone"},
    ]
    job["spec"]["mapping"][2]["date_format"] = "%Y"  # points is an integer
    response = await api.call("POST", "/jobs", role=Role.OPERATOR, json=job)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [
        "spec.mapping[2]",
        "spec.mapping[3].field",
        "spec.mapping[4].field",
    ]
    assert "'nope'" in errors[1]["message"] and "'gone'" in errors[2]["message"]

    job = import_job("unknown", connection_id, "a.csv", "contacts")
    job["spec"]["colour"] = "blue"
    job["spec"]["source"]["speed"] = "fast"
    unknown = await api.call("POST", "/jobs", role=Role.OPERATOR, json=job)
    assert unknown.status_code == 422
    assert {e["field"] for e in unknown.json()["errors"]} == {"spec.colour", "spec.source.speed"}
    assert unknown.json()["error"]["field"] in {"spec.colour", "spec.source.speed"}
    assert (await api.ok("GET", "/jobs"))["total"] == 0


async def test_other_errors_list_their_one_problem(api: Api) -> None:
    response = await api.call("GET", "/jobs/999")
    assert response.status_code == 404
    answer = response.json()
    assert answer["errors"] == [answer["error"]] and answer["error"]["code"] == "not_found"


# --- DELETE ---------------------------------------------------------------------------------------


async def test_every_single_resource_delete_answers_204_then_404(api: Api, tmp_path: Path) -> None:
    connection_id = await sftp_connection(api)
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    jobs = [
        await api.ok("POST", "/jobs", json=import_job(f"j{i}", connection_id, "a.csv", "contacts"))
        for i in range(2)
    ]
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": [jobs[1]["id"]]})
    hook = await api.ok("POST", "/notification-channels", json={
        "kind": "webhook", "name": "hook", "url": "https://hooks.example.com/connect"})  # fmt: skip
    with Gpg(tmp_path / "gpg") as gpg:
        partner = gpg.generate("Partner <feeds@partner.example>")
    key = await api.ok("POST", "/keys", json={"name": "partner", "kind": "public",
                                               "armored": partner.public.decode()})  # fmt: skip
    token = await api.ok("POST", "/tokens", json={"name": "ci"})
    paths = [
        f"/jobs/{jobs[0]['id']}?confirm=true",
        f"/groups/{group['id']}?confirm=true",
        f"/notification-channels/{hook['id']}",
        f"/keys/{key['id']}",
        f"/tokens/{token['id']}",
    ]
    for path in paths:
        first = await api.call("DELETE", path)
        assert (first.status_code, first.content) == (204, b""), (path, first.text)
        second = await api.call("DELETE", path)
        assert second.status_code == 404, (path, second.text)
        assert second.json()["error"]["code"] == "not_found"

    routes = api.app.openapi()["paths"]
    deletes = {path: ops["delete"]["responses"] for path, ops in routes.items() if "delete" in ops}
    assert len(deletes) == len(paths)  # the rule is stated for every DELETE the API has
    for path, responses in deletes.items():
        assert "204" in responses and "200" not in responses, path


# --- pagination -----------------------------------------------------------------------------------


async def walk(api: Api, path: str, params: dict[str, Any], size: int = 2, back: bool = True) -> list[Any]:
    """Follow `next` from the first page until null; each page's `Link` header says what its body does.
    Then follow `prev` back from the last page to the first (`back`: a cursor only goes forward).
    Returns the items in page order."""
    page, link = await _get(api, path, params | {"limit": size})
    assert page["prev"] is None and "prev" not in link
    pages = [page]
    while page["next"] is not None:
        assert link["next"] == page["next"]
        for key, value in params.items():
            assert f"{key}={value}" in page["next"], (page["next"], key)  # the filters are kept
        page, link = await _get(api, page["next"], {})
        assert page["total"] == pages[0]["total"] and 0 < len(page["items"]) <= size
        pages.append(page)
    assert "next" not in link
    if not back:
        assert all(p["prev"] is None for p in pages)
        return [item for p in pages for item in p["items"]]
    backwards = [page]
    while page["prev"] is not None:
        assert link["prev"] == page["prev"]
        page, link = await _get(api, page["prev"], {})
        backwards.append(page)
    assert [p["items"] for p in reversed(backwards)] == [p["items"] for p in pages]
    return [item for p in pages for item in p["items"]]


async def _get(api: Api, path: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    # httpx replaces a URL's query with `params` when they are given, even empty ones
    response = await api.call("GET", path.removeprefix("/api/v1"), params=params or None)
    assert response.status_code == 200, response.text
    found = re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers.get("Link", ""))
    links = {rel: url for url, rel in found}
    return response.json(), links


async def every(api: Api, path: str, params: dict[str, Any], limit: int = 500) -> dict[str, Any]:
    whole: dict[str, Any] = await api.ok("GET", path, params=params | {"limit": limit})
    assert whole["next"] is None and whole["prev"] is None
    return whole


async def seed_lists(api: Api, mongo: MongoClient, settings: CommonSettings, gpg: Gpg) -> None:
    """Three to five items of each list (and some its filters leave out)."""
    connection_ids = [await sftp_connection(api, name=f"sftp-{i}") for i in range(3)]
    for i in range(3):
        await api.ok("POST", "/tables", json=contacts_table(f"table_{i}"))
    for i in range(4):
        job = import_job(f"walk-{i}", connection_ids[0], "a.csv", "table_0")
        created = await api.ok("POST", "/jobs", json=job)
        if i < 3:
            await api.ok("POST", "/groups", json={"name": f"group-{i}", "job_ids": [created["id"]]})
    await api.ok("POST", "/jobs", json=import_job("other", connection_ids[0], "a.csv", "table_0"))
    for i in range(3):
        await api.ok("POST", "/tokens", json={"name": f"token-{i}"})
        await api.ok("POST", "/notification-channels", json={
            "kind": "webhook", "name": f"hook-{i}", "url": f"https://hooks.example.com/{i}"})  # fmt: skip
        partner = gpg.generate(f"Partner {i} <feeds{i}@partner.example>")
        await api.ok("POST", "/keys", json={"name": f"partner-{i}", "kind": "public",
                                             "armored": partner.public.decode()})  # fmt: skip
    logsink = mongo[settings.database("logsink")]
    await logsink[LogsinkCollections.RUNS].insert_many([
        {"_id": f"{job}.{n}", "job_id": job, "run_number": n, "status": "succeeded", "last_log_seq": 5,
         "requested_at": T0 + timedelta(minutes=n)}
        for job, count in ((77, 5), (78, 1)) for n in range(1, count + 1)
    ])  # fmt: skip
    await logsink[LogsinkCollections.GROUP_RUNS].insert_many([
        {"_id": f"{group}.{n}", "group_id": group, "run_number": n, "status": "succeeded"}
        for group, count in ((9, 3), (8, 1)) for n in range(1, count + 1)
    ])  # fmt: skip
    lines = [{"run_id": "77.1", "seq": seq, "at": T0, "level": "info", "message": f"line {seq}", "fields": {}}
             for seq in range(1, 6)]  # fmt: skip
    await logsink[LogsinkCollections.RUN_LOGS].insert_many(chunk_lines(lines))
    await mongo[settings.database("executor")][ExecutorCollections.RUN_REJECTS].insert_many([
        {"run": "77.1", "file": file, "line": line, "field": "email", "reason": "bad", "record": f"r{line}"}
        for file, line in ((0, 3), (0, 4), (0, 9), (1, 2), (1, 5))
    ])  # fmt: skip


async def test_every_list_is_walked_by_its_links_with_filters_kept(
    api: Api, mongo: MongoClient, settings: CommonSettings, tmp_path: Path
) -> None:
    with Gpg(tmp_path / "gpg") as gpg:
        await seed_lists(api, mongo, settings, gpg)
    lists: list[tuple[str, dict[str, Any], int | None]] = [
        ("/connections", {}, 3),
        ("/tables", {}, 3),
        ("/jobs", {"name": "walk", "sort": "-name"}, 4),
        ("/groups", {"sort": "-id"}, 3),
        ("/tokens", {}, None),  # the fixture's own tokens too
        ("/keys", {}, 3),
        ("/notification-channels", {}, 3),
        ("/audit", {"kind": "table"}, 3),
        ("/runs", {"job_id": 77, "sort": "requested_at"}, 5),
        ("/group-runs", {"group_id": 9}, 3),
    ]
    for path, filters, expected in lists:
        whole = await every(api, path, filters)
        assert expected is None or whole["total"] == expected, path
        assert len(whole["items"]) == whole["total"] >= 3, path
        assert await walk(api, path, filters) == whole["items"], path
    assert [r["run_id"] for r in await walk(api, "/runs", {"job_id": 77})] == [
        f"77.{n}" for n in range(5, 0, -1)
    ]

    rejects = await every(api, "/runs/77.1/rejects", {}, limit=1000)
    assert rejects["total"] == 5
    assert await walk(api, "/runs/77.1/rejects", {}, back=False) == rejects["items"]
    by_offset, link = await _get(api, "/runs/77.1/rejects", {"limit": 2, "offset": 4})
    assert by_offset["prev"] == link["prev"] and "offset=2" in by_offset["prev"] and by_offset["next"] is None
    cursor_page, _ = await _get(api, "/runs/77.1/rejects", {"limit": 2, "after": "1:4"})
    assert [r["line"] for r in cursor_page["items"]] == [9, 2] and cursor_page["prev"] is None
    assert cursor_page["next"] is not None and "after=2%3A2" in cursor_page["next"]
    assert "offset" not in cursor_page["next"]

    seen: list[int] = []
    logs, link = await _get(api, "/runs/77.1/logs", {"limit": 2})
    while True:
        seen += [line["seq"] for line in logs["lines"]]
        if logs["next"] is None:
            break
        assert link["next"] == logs["next"] and "limit=2" in logs["next"]
        logs, link = await _get(api, logs["next"], {})
    assert seen == [1, 2, 3, 4, 5] and logs["complete"] and "next" not in link


async def test_a_limit_beyond_the_largest_is_refused(api: Api) -> None:
    paths = ("/connections", "/tables", "/jobs", "/groups", "/tokens", "/keys", "/notification-channels",
             "/audit", "/runs", "/group-runs")  # fmt: skip
    largest = dict.fromkeys(paths, 500)
    largest |= {"/runs/1.1/logs": 1000, "/runs/1.1/rejects": 1000}  # lines and rejects are small
    for path, limit in largest.items():
        beyond = await api.call("GET", path, params={"limit": limit + 1})
        assert beyond.status_code == 422 and beyond.json()["error"]["field"] == "limit", path
        assert (await api.call("GET", path, params={"limit": 0})).status_code == 422, path
    assert (await api.call("GET", "/jobs", params={"limit": 500})).status_code == 200
