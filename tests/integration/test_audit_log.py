"""The audit trail (issue #19) through the REST API on the real database: one entry per change, in the
change's own transaction, with a diff of the fields and never a secret; filtered and paged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest

from services.catalog.domain import Role
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.integration.test_catalog_jobs import mark_running, setup_job
from tests.support.catalog_api import SECRET_PASSWORD, Api, running_catalog, sftp_connection
from tests.support.gpg import Gpg


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo) as api:
        yield api


async def trail(api: Api, **params: Any) -> list[dict[str, Any]]:
    page = await api.ok("GET", "/audit", role=Role.VIEWER, params=params)
    return list(reversed(page["items"]))  # oldest first, to read as a story


async def test_a_jobs_changes_and_actions_are_each_one_entry(
    api: Api, mongo: MongoClient, settings: CommonSettings, topology: Topology
) -> None:
    job = await setup_job(api, "audited")
    path = f"/jobs/{job['id']}"
    await api.ok("PATCH", path, role=Role.OPERATOR, json={"version": 1, "name": "audited-2"})
    await api.ok("POST", f"{path}/deactivate", role=Role.OPERATOR)
    await api.ok("POST", f"{path}/activate", role=Role.OPERATOR)
    run = await api.ok("POST", f"{path}/run", role=Role.OPERATOR)
    await mark_running(mongo, settings, job["id"], f"{job['id']}.99")
    async with await aio_pika.connect(settings.amqp_url) as connection:  # an executor hears the stop
        listener = await (await connection.channel()).declare_queue(exclusive=True)
        await listener.bind(topology.control.name)
        await api.ok("POST", f"{path}/stop", role=Role.OPERATOR, params={"confirm": "true"})
    await mongo[settings.database("logsink")]["runs"].delete_many({})
    await api.ok("DELETE", path, role=Role.OPERATOR, params={"confirm": "true"})

    entries = await trail(api, kind="job", item_id=str(job["id"]))
    assert [e["action"] for e in entries] == [
        "created", "updated", "deactivated", "activated", "run-now", "stop", "deleted",
    ]  # fmt: skip
    assert {e["actor"] for e in entries} == {"operator-user"}
    created, renamed, deactivated = entries[:3]
    assert created["after_version"] == 1 and created["changes"]["name"] == {
        "before": None,
        "after": "audited",
    }
    assert (renamed["before_version"], renamed["after_version"]) == (1, 2)
    assert renamed["changes"]["name"] == {"before": "audited", "after": "audited-2"}
    assert "spec.source.path" not in renamed["changes"]  # only what changed
    assert deactivated["changes"]["active"] == {"before": True, "after": False}
    assert entries[4]["detail"] == {"run_id": run["run_id"]}
    assert entries[5]["detail"] == {"run_id": f"{job['id']}.99"}
    assert entries[6]["before_version"] == 4 and entries[6]["after_version"] is None


async def test_every_kind_is_audited_and_no_secret_is_kept(
    api: Api, mongo: MongoClient, settings: CommonSettings, tmp_path: Any
) -> None:
    connection_id = await sftp_connection(api, name="audited-sftp")  # its password is SECRET_PASSWORD
    job = await setup_job(api, "member")
    group = await api.ok("POST", "/groups", role=Role.OPERATOR, json={"name": "g", "job_ids": [job["id"]]})
    renamed = {"version": 1, "name": "g2", "job_ids": [job["id"]]}
    await api.ok("PUT", f"/groups/{group['id']}", role=Role.OPERATOR, json=renamed)
    await api.ok("DELETE", f"/groups/{group['id']}", role=Role.OPERATOR, params={"confirm": "true"})
    mail = await api.ok("POST", "/notification-channels", json={
        "kind": "smtp", "name": "ops mail", "host": "127.0.0.1", "port": 2525, "username": "connect",
        "password": SECRET_PASSWORD, "from_address": "connect@example.com", "to": ["ops@example.com"]})  # fmt: skip
    hook = await api.ok("POST", "/notification-channels", json={
        "kind": "webhook", "name": "ops hook", "url": "https://hooks.example.com/connect"})  # fmt: skip
    await api.ok("DELETE", f"/notification-channels/{hook['id']}")
    with Gpg(tmp_path / "gpg") as gpg:
        partner = gpg.generate("Partner <feeds@partner.example>")
    key = await api.ok("POST", "/keys", json={"name": "partner", "kind": "public",
                                               "armored": partner.public.decode()})  # fmt: skip
    await api.ok("DELETE", f"/keys/{key['id']}")

    everything = await api.call("GET", "/audit", role=Role.VIEWER, params={"limit": 500})
    stored = [doc async for doc in mongo[settings.database("catalog")]["audit_log"].find({})]
    for text in (everything.text, repr(stored)):
        for secret in (SECRET_PASSWORD, hook["signing_secret"], "whsec_"):
            assert secret not in text
    seen = {(e["kind"], e["item_id"], e["action"]) for e in everything.json()["items"]}
    assert {
        ("connection", str(connection_id), "created"),
        ("table", "contacts", "created"),
        ("group", str(group["id"]), "created"),
        ("group", str(group["id"]), "updated"),
        ("group", str(group["id"]), "deleted"),
        ("notification channel", str(mail["id"]), "created"),
        ("notification channel", str(hook["id"]), "created"),
        ("notification channel", str(hook["id"]), "deleted"),
        ("key", str(key["id"]), "created"),
        ("key", str(key["id"]), "deleted"),
    } <= seen
    [connection] = await trail(api, kind="connection", item_id=str(connection_id))
    assert connection["changes"]["password"] == {"before": None, "after": "***"}
    [smtp] = await trail(api, kind="notification channel", item_id=str(mail["id"]))
    assert smtp["changes"]["password"]["after"] == "***"
    assert smtp["changes"]["host"] == {"before": None, "after": "127.0.0.1"}


async def test_a_refused_change_writes_no_entry(api: Api) -> None:
    job = await setup_job(api, "refused")
    before = (await api.ok("GET", "/audit", role=Role.VIEWER))["total"]
    stale = await api.call(
        "PATCH", f"/jobs/{job['id']}", role=Role.OPERATOR, json={"version": 7, "name": "x"}
    )
    assert stale.status_code == 409
    taken = await api.call("POST", "/jobs", role=Role.OPERATOR, json={**job_body(job), "name": "refused"})
    assert taken.status_code == 409
    missing = await api.call("DELETE", "/notification-channels/999")
    assert missing.status_code == 404
    gone = await api.call(
        "POST", "/jobs/delete", role=Role.OPERATOR, json={"ids": [job["id"], 999], "confirm": True}
    )
    assert gone.status_code == 404
    assert (await api.ok("GET", "/audit", role=Role.VIEWER))["total"] == before


def job_body(job: dict[str, Any]) -> dict[str, Any]:
    return {key: job[key] for key in ("name", "spec", "schedule", "notifications")}


async def test_filters_and_pages_with_a_next_link(api: Api) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    job = await setup_job(api, "paged")  # by an admin: connection, table; by the operator: the job
    for _ in range(3):
        await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR)
        await api.ok("POST", f"/jobs/{job['id']}/activate", role=Role.OPERATOR)

    by_operator = await api.ok("GET", "/audit", role=Role.VIEWER, params={"actor": "operator-user"})
    assert by_operator["total"] == 7 and {e["actor"] for e in by_operator["items"]} == {"operator-user"}
    by_admin = await api.ok("GET", "/audit", role=Role.VIEWER, params={"actor": "admin-user"})
    assert {e["kind"] for e in by_admin["items"]} == {"connection", "table"}
    assert (await api.ok("GET", "/audit", role=Role.VIEWER, params={"kind": "table"}))["total"] == 1
    later = await api.ok("GET", "/audit", role=Role.VIEWER, params={"since": datetime.now(UTC).isoformat()})
    assert later["total"] == 0
    window = {"until": start.isoformat()}
    assert (await api.ok("GET", "/audit", role=Role.VIEWER, params=window))["total"] == 0

    seen: list[dict[str, Any]] = []
    page = await api.ok("GET", "/audit", role=Role.VIEWER, params={"kind": "job", "limit": 3})
    while True:
        assert page["total"] == 7 and len(page["items"]) <= 3
        seen += page["items"]
        if page["next"] is None:
            break
        assert page["next"].startswith("/api/v1/audit?") and "kind=job" in page["next"]
        page = await api.ok("GET", page["next"].removeprefix("/api/v1"), role=Role.VIEWER)
    assert len(seen) == 7 and seen[-1]["action"] == "created"  # newest first
    times = [e["at"] for e in seen]
    assert times == sorted(times, reverse=True)


async def test_deleting_a_member_job_is_in_its_groups_history(api: Api) -> None:
    first, second = await setup_job(api, "member-1"), await setup_job(api, "member-2")
    group = await api.ok(
        "POST", "/groups", role=Role.OPERATOR, json={"name": "pair", "job_ids": [first["id"], second["id"]]}
    )
    await api.ok("DELETE", f"/jobs/{first['id']}", role=Role.OPERATOR, params={"confirm": "true"})

    entries = await trail(api, kind="group", item_id=str(group["id"]))
    assert [e["action"] for e in entries] == ["created", "updated"]
    left = entries[1]
    assert left["actor"] == "operator-user" and left["detail"] == {"jobs_deleted": [first["id"]]}
    assert left["changes"]["job_ids"] == {"before": [first["id"], second["id"]], "after": [second["id"]]}
    assert (left["before_version"], left["after_version"]) == (1, 2)
