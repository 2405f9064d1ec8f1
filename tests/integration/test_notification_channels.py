"""Notification channels as catalog resources (admin) and rules on jobs and groups (operator), with bad
input refused by a 422 naming the field and secrets never returned (issue #16, notifications)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.catalog.domain import Role
from shared.mongo import MongoClient
from shared.secrets import Binding, SecretBox
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import SECRET_PASSWORD, Api, running_catalog, sftp_connection


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


def smtp(**overrides: Any) -> dict[str, Any]:
    body = {"kind": "smtp", "name": "ops mail", "host": "127.0.0.1", "port": 2525, "username": "connect",
            "password": SECRET_PASSWORD, "from_address": "connect@example.com", "to": ["ops@example.com"]}  # fmt: skip
    return body | overrides


def webhook(url: str = "https://hooks.example.com/connect", name: str = "ops hook") -> dict[str, Any]:
    return {"kind": "webhook", "name": name, "url": url}


async def refused(api: Api, method: str, path: str, body: dict[str, Any], field: str) -> None:
    response = await api.call(method, path, json=body)
    assert response.status_code == 422, (field, response.text)
    assert response.json()["error"]["field"] == field, response.json()


async def test_channels_are_created_read_listed_and_deleted_by_an_admin_without_their_secrets(
    api: Api, settings: CommonSettings, mongo: MongoClient
) -> None:
    mail = await api.ok("POST", "/notification-channels", json=smtp())
    assert mail["kind"] == "smtp" and mail["to"] == ["ops@example.com"] and mail["starttls"] is True
    assert mail["signing_secret"] is None
    hook = await api.ok("POST", "/notification-channels", json=webhook())
    secret = hook["signing_secret"]
    assert secret.startswith("whsec_") and len(secret) > 40  # shown once, at creation

    read = await api.ok("GET", f"/notification-channels/{hook['id']}", role=Role.VIEWER)
    assert "signing_secret" not in read and read["url"] == "https://hooks.example.com/connect"
    listed = await api.ok("GET", "/notification-channels", role=Role.VIEWER)
    assert listed["total"] == 2
    assert secret not in str(listed) and secret not in str(read)

    stored = await mongo[settings.database("catalog")]["notification_channels"].find_one({"_id": hook["id"]})
    assert stored is not None and secret not in str(stored)
    box = SecretBox(settings.secret_key or "")
    assert (
        box.decrypt(
            stored["secret_encrypted"], Binding("notification_channel", stored["_id"], "secret_encrypted")
        )
        == secret
    )  # encrypted at rest, as connection secrets
    mail_doc = await mongo[settings.database("catalog")]["notification_channels"].find_one(
        {"_id": mail["id"]}
    )
    assert (
        mail_doc is not None
        and box.decrypt(
            mail_doc["password_encrypted"],
            Binding("notification_channel", mail_doc["_id"], "password_encrypted"),
        )
        == SECRET_PASSWORD
    )

    operator = await api.call("POST", "/notification-channels", role=Role.OPERATOR, json=webhook(name="x"))
    assert operator.status_code == 403
    assert (
        await api.call("DELETE", f"/notification-channels/{mail['id']}", role=Role.OPERATOR)
    ).status_code == 403
    assert (await api.call("DELETE", f"/notification-channels/{mail['id']}")).status_code == 204
    assert (await api.call("GET", f"/notification-channels/{mail['id']}")).status_code == 404
    assert (await api.call("DELETE", f"/notification-channels/{mail['id']}")).status_code == 404


async def test_bad_channels_are_refused_naming_the_field(api: Api) -> None:
    path = "/notification-channels"
    await refused(api, "POST", path, webhook("http://hooks.example.com/connect"), "url")
    await refused(api, "POST", path, webhook("http://10.0.0.8/connect"), "url")
    await refused(api, "POST", path, webhook("ftp://hooks.example.com/x"), "url")
    await refused(api, "POST", path, webhook("https://user:pw@hooks.example.com/x"), "url")
    await refused(api, "POST", path, webhook("not a url"), "url")
    await refused(api, "POST", path, smtp(to=["ops@example.com", "not-an-address"]), "to[1]")
    await refused(api, "POST", path, smtp(from_address="a@b@c.com"), "from_address")
    await refused(api, "POST", path, smtp(host="bad host!"), "host")
    await refused(api, "POST", path, smtp(to=[]), "to")
    assert (await api.ok("GET", path))["total"] == 0
    for loopback in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]:9/hook"):
        await api.ok("POST", path, json=webhook(loopback, name=loopback))  # plain http only to loopback


async def test_rules_on_jobs_and_groups_name_existing_channels_and_known_outcomes(api: Api) -> None:
    channel = (await api.ok("POST", "/notification-channels", json=webhook()))["id"]
    connection_id = await sftp_connection(api)
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    job = import_job("nightly", connection_id, "in/a.csv", "contacts")

    await refused(api, "POST", "/jobs", job | {"notifications": [{"on": ["failed"], "channels": [channel + 7]}]},
                  "notifications[0].channels")  # fmt: skip
    await refused(api, "POST", "/jobs", job | {"notifications": [{"on": ["exploded"], "channels": [channel]}]},
                  "notifications[0].on[0]")  # fmt: skip
    await refused(api, "POST", "/jobs", job | {"notifications": [{"on": [], "channels": [channel]}]},
                  "notifications[0].on")  # fmt: skip
    rules = [{"on": ["failed", "timed_out", "recovered"], "channels": [channel]}]
    created = await api.ok("POST", "/jobs", role=Role.OPERATOR, json=job | {"notifications": rules})
    assert created["notifications"] == rules

    edited = await api.ok("PATCH", f"/jobs/{created['id']}", role=Role.OPERATOR,
                          json={"version": created["version"], "notifications": [{"on": ["succeeded"], "channels": [channel]}]})  # fmt: skip
    assert edited["notifications"] == [{"on": ["succeeded"], "channels": [channel]}]
    await refused(api, "PATCH", f"/jobs/{created['id']}",
                  {"version": edited["version"], "notifications": [{"on": ["failed"], "channels": [999]}]},
                  "notifications[0].channels")  # fmt: skip

    group = {
        "name": "night",
        "job_ids": [created["id"]],
        "notifications": [{"on": ["failed"], "channels": [998]}],
    }
    await refused(api, "POST", "/groups", group, "notifications[0].channels")
    group["notifications"] = [{"on": ["failed", "succeeded"], "channels": [channel]}]
    made = await api.ok("POST", "/groups", role=Role.OPERATOR, json=group)
    assert made["notifications"] == group["notifications"]
    assert (await api.ok("GET", f"/groups/{made['id']}"))["notifications"] == group["notifications"]
