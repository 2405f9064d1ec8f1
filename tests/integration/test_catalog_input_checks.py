"""What the catalog refuses at creation, with a 422 naming the field and nothing stored, and the schedule
preview reaching any later stretch (issue #12, defect 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncssh
import pytest

from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import FAKE_HOST_KEY, Api, running_catalog, sftp_connection

PAST = (datetime.now(UTC) - timedelta(days=1)).isoformat()
FUTURE = (datetime.now(UTC) + timedelta(days=30)).isoformat()


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


async def refused(api: Api, method: str, path: str, body: dict[str, Any], field: str) -> str:
    response = await api.call(method, path, json=body)
    assert response.status_code == 422, (field, response.text)
    error = response.json()["error"]
    assert error["field"] == field, error
    return str(error["message"])


async def total(api: Api, path: str) -> int:
    return int((await api.ok("GET", path))["total"])


async def contacts(api: Api, base_dir: str = "/") -> int:
    connection_id = await sftp_connection(api, base_dir=base_dir)
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    return connection_id


async def test_dot_dot_segments_are_refused_in_every_remote_path_even_under_root(api: Api) -> None:
    connection_id = await contacts(api, base_dir="/")
    for path in (
        "../../etc/passwd",
        "in/../../etc/passwd",
        "in/../a.csv",
        "..\\..\\etc\\passwd",
        "in/../*.csv",
    ):
        message = await refused(
            api, "POST", "/jobs", import_job("j", connection_id, path, "contacts"), "spec.source.path"
        )
        assert "'..'" in message
    feed = import_job("feed", connection_id, "x", "contacts")
    feed["spec"]["source"] = {
        "kind": "adobe_analytics",
        "connection_id": connection_id,
        "manifest_path": "../f/*.txt",
    }
    await refused(api, "POST", "/jobs", feed, "spec.source.path")
    export = {
        "name": "out",
        "spec": {"kind": "export", "source": {"kind": "table", "table": "contacts"},
                 "destination": {"kind": "sftp", "connection_id": connection_id,
                                 "path_template": "out/{date}/../../../etc/cron.d/x_{run_id}.csv"}},
    }  # fmt: skip
    await refused(api, "POST", "/jobs", export, "spec.destination.path_template")
    assert await total(api, "/jobs") == 0
    ok = await api.ok("POST", "/jobs", json=import_job("fine", connection_id, "in/..a.csv", "contacts"))
    assert ok["spec"]["source"]["path"] == "in/..a.csv"  # a name that merely starts with dots is a name


async def test_an_unknown_encoding_is_refused(api: Api) -> None:
    connection_id = await contacts(api)
    for encoding in ("utf-9", "rot13", "base64"):
        body = import_job("j", connection_id, "a.csv", "contacts")
        body["spec"]["format"] = {"encoding": encoding}
        message = await refused(api, "POST", "/jobs", body, "spec.format.encoding")
        assert f"unknown encoding '{encoding}'" in message
    body = import_job("latin", connection_id, "a.csv", "contacts")
    body["spec"]["format"] = {"encoding": "latin-1"}
    await api.ok("POST", "/jobs", json=body)
    assert await total(api, "/jobs") == 1


async def test_a_bad_max_duration_is_refused_on_create_and_edit_and_a_good_one_kept(api: Api) -> None:
    connection_id = await contacts(api)
    for bad, why in (("PT25H", "24 hours"), ("PT0S", "longer than zero"), ("2 hours", "ISO 8601")):
        body = import_job("j", connection_id, "a.csv", "contacts")
        body["spec"]["max_duration"] = bad
        assert why in await refused(api, "POST", "/jobs", body, "spec.max_duration")
    assert await total(api, "/jobs") == 0
    body = import_job("j", connection_id, "a.csv", "contacts")
    body["spec"]["max_duration"] = "pt2h"
    created = await api.ok("POST", "/jobs", json=body)
    assert created["spec"]["max_duration"] == "PT2H"
    spec = created["spec"] | {"max_duration": "P2D"}
    await refused(api, "PATCH", f"/jobs/{created['id']}", {"version": 1, "spec": spec}, "spec.max_duration")
    shown = await api.ok("GET", f"/jobs/{created['id']}")
    assert shown["spec"]["max_duration"] == "PT2H" and shown["version"] == 1


async def test_instants_in_the_past_are_refused_on_create_and_when_an_edit_changes_them(api: Api) -> None:
    connection_id = await contacts(api)
    job = import_job("j", connection_id, "a.csv", "contacts")
    await refused(api, "POST", "/jobs", job | {"expires_at": PAST}, "expires_at")
    await refused(api, "POST", "/jobs", job | {"schedule": {"type": "one_time", "at": PAST}}, "schedule.at")
    assert await total(api, "/jobs") == 0
    created = await api.ok("POST", "/jobs", json=job | {"schedule": {"type": "one_time", "at": FUTURE}})
    put = job | {"version": 1, "schedule": {"type": "one_time", "at": PAST}}
    await refused(api, "PUT", f"/jobs/{created['id']}", put, "schedule.at")
    await refused(api, "PATCH", f"/jobs/{created['id']}", {"version": 1, "expires_at": PAST}, "expires_at")
    renamed = await api.ok("PATCH", f"/jobs/{created['id']}", json={"version": 1, "name": "renamed"})
    assert renamed["version"] == 2
    ids = [created["id"]]
    await refused(api, "POST", "/groups", {"name": "g", "job_ids": ids, "expires_at": PAST}, "expires_at")
    once = {"name": "g", "job_ids": ids, "schedule": {"type": "one_time", "at": PAST}}
    await refused(api, "POST", "/groups", once, "schedule.at")
    assert await total(api, "/groups") == 0
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": ids, "expires_at": FUTURE})
    edit = {"version": 1, "name": "g", "job_ids": ids, "expires_at": PAST}
    await refused(api, "PUT", f"/groups/{group['id']}", edit, "expires_at")


async def test_an_edit_keeping_a_past_one_time_instant_is_allowed(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    connection_id = await contacts(api)
    job = import_job("j", connection_id, "a.csv", "contacts") | {
        "schedule": {"type": "one_time", "at": FUTURE}
    }
    created = await api.ok("POST", "/jobs", json=job)
    # Time passes: the job fired; its stored instant is now in the past.
    await mongo[settings.database("catalog")]["jobs"].update_one(
        {"_id": created["id"]}, {"$set": {"schedule.at": PAST}}
    )
    body = job | {"version": 1, "name": "renamed", "schedule": {"type": "one_time", "at": PAST}}
    assert (await api.ok("PUT", f"/jobs/{created['id']}", json=body))["name"] == "renamed"


async def test_sftp_keys_that_cannot_be_read_are_refused(api: Api) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    body = {"name": "c", "host": "127.0.0.1", "username": "u", "host_key": FAKE_HOST_KEY}
    bad_pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n"
    for private_key in (bad_pem, key.export_private_key("pkcs8-pem", passphrase="pw").decode()):
        await refused(api, "POST", "/connections", body | {"private_key": private_key}, "private_key")
    for host_key in ("ssh-ed25519 AAAAnotakey", "example.com " + FAKE_HOST_KEY, "-" * 40):
        await refused(
            api, "POST", "/connections", body | {"password": "pw12", "host_key": host_key}, "host_key"
        )
    await refused(
        api, "POST", "/connections", body | {"password": "pw12", "base_dir": "/data/../etc"}, "base_dir"
    )
    assert await total(api, "/connections") == 0
    good = await api.ok(
        "POST", "/connections", json=body | {"private_key": key.export_private_key().decode()}
    )
    assert good["auth"] == "private_key"


async def daily_paris_job(api: Api) -> int:
    connection_id = await contacts(api)
    schedule = {"type": "recurring", "rule": {"kind": "daily", "at": "02:30:00"}, "timezone": "Europe/Paris"}
    job = await api.ok(
        "POST", "/jobs", json=import_job("daily", connection_id, "a.csv", "contacts") | {"schedule": schedule}
    )
    return int(job["id"])


async def test_schedule_preview_starts_from_any_instant_and_pages_forward(api: Api) -> None:
    job_id = await daily_paris_job(api)
    next_year = datetime.now(UTC).year + 1
    start = f"{next_year}-03-01T00:00:00Z"
    page = await api.ok("GET", f"/jobs/{job_id}/schedule-preview", params={"from": start, "count": 40})
    fires = page["fires"]
    assert fires[0]["local"].startswith(f"{next_year}-03-01T02:30:00")
    changes = [f for f in fires if f["dst_change"]]  # 02:30 falls in the spring-forward gap that day
    assert len(changes) == 1 and changes[0]["local"].startswith(f"{next_year}-03-")
    following = await api.ok(
        "GET", f"/jobs/{job_id}/schedule-preview", params={"from": page["next_from"], "count": 2}
    )
    after_last = datetime.fromisoformat(fires[-1]["utc"]) + timedelta(days=1)
    assert datetime.fromisoformat(following["fires"][0]["utc"]) == after_last  # no gap, no repeat
    year = await api.ok("GET", f"/jobs/{job_id}/schedule-preview", params={"count": 800})
    assert len(year["fires"]) == 800  # more than two years of a daily schedule in one answer
    naive = await api.call("GET", f"/jobs/{job_id}/schedule-preview", params={"from": "2030-01-01T00:00:00"})
    assert naive.status_code == 422 and naive.json()["error"]["field"] == "from"


async def test_group_schedule_preview_takes_from_too(api: Api) -> None:
    job_id = await daily_paris_job(api)
    schedule = {"type": "recurring", "rule": {"kind": "every", "minutes": 60}, "timezone": "UTC"}
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": [job_id], "schedule": schedule})
    start = "2031-06-01T00:00:00Z"
    page = await api.ok("GET", f"/groups/{group['id']}/schedule-preview", params={"from": start, "count": 3})
    assert [f["utc"][:16] for f in page["fires"]] == [
        "2031-06-01T01:00",
        "2031-06-01T02:00",
        "2031-06-01T03:00",
    ]
