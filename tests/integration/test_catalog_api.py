"""The catalog's REST API in-process, with the real database, broker and a real scheduler."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.catalog.domain import Role
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import SECRET_PASSWORD, Api, running_catalog, sftp_connection


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo) as api:
        yield api


async def make_connection(api: Api) -> int:
    return await sftp_connection(api)


async def test_requests_without_a_valid_token_are_refused(api: Api) -> None:
    missing = await api.call("GET", "/jobs", role=None)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        wrong = await client.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "invalid or revoked token"


async def test_roles_are_enforced(api: Api) -> None:
    body = contacts_table("contacts")
    assert (await api.call("POST", "/tables", role=Role.VIEWER, json=body)).status_code == 403
    refused = await api.call("POST", "/tables", role=Role.OPERATOR, json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "this action needs the admin role"
    assert (await api.call("POST", "/tables", role=Role.ADMIN, json=body)).status_code == 201
    assert (await api.call("GET", "/tables/contacts", role=Role.VIEWER)).status_code == 200


async def test_connection_secrets_are_stored_encrypted_and_never_returned(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    connection_id = await make_connection(api)
    shown = (await api.call("GET", f"/connections/{connection_id}")).json()
    assert shown["auth"] == "password" and "password" not in shown
    listed = (await api.call("GET", "/connections")).json()
    assert listed["total"] == 1
    stored = await mongo[settings.database("catalog")]["connections"].find_one({"_id": connection_id})
    assert stored is not None and SECRET_PASSWORD not in str(stored)
    assert stored["password_encrypted"]


async def test_invalid_input_gets_a_clear_message_naming_the_field(api: Api) -> None:
    connection_id = await make_connection(api)
    await api.call("POST", "/tables", json=contacts_table("contacts"))
    unknown = await api.call("POST", "/tables", json={**contacts_table("other"), "colour": "red"})
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "colour"

    job = import_job("bad mapping", connection_id, "a.csv", "contacts")
    job["spec"]["mapping"][2]["field"] = "no_such_field"
    bad_field = await api.call("POST", "/jobs", json=job)
    assert bad_field.status_code == 422
    assert bad_field.json()["error"] == {
        "code": "validation_failed",
        "message": "field 'no_such_field' is not a field of table contacts",
        "field": "spec.mapping[2].field",
    }
    escaping = await api.call(
        "POST", "/jobs", json=import_job("escape", connection_id, "../etc/passwd", "contacts")
    )
    assert escaping.status_code == 422
    assert escaping.json()["error"]["field"] == "spec.source.path"
    missing_table = await api.call(
        "POST", "/jobs", json=import_job("no table", connection_id, "a.csv", "nope")
    )
    assert missing_table.status_code == 404
    assert (await api.call("GET", "/jobs")).json()["total"] == 0  # nothing was created


async def test_duplicate_names_conflict(api: Api) -> None:
    assert (await api.call("POST", "/tables", json=contacts_table("contacts"))).status_code == 201
    again = await api.call("POST", "/tables", json=contacts_table("contacts"))
    assert again.status_code == 409
    assert again.json()["error"]["field"] == "name"


async def test_oversized_bodies_are_refused(api: Api) -> None:
    response = await api.call(
        "POST", "/tables", content=b"x" * 300_000, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


async def test_run_now_returns_the_run_id_and_refuses_while_running(api: Api) -> None:
    connection_id = await make_connection(api)
    await api.call("POST", "/tables", json=contacts_table("contacts"))
    created = await api.call(
        "POST", "/jobs", role=Role.OPERATOR, json=import_job("nightly", connection_id, "a.csv", "contacts")
    )
    job = created.json()
    assert created.status_code == 201
    assert job["created_by"] == "operator-user" and job["state"] == "active" and job["previous_run"] is None

    first = await api.call("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR)
    assert first.status_code == 202
    assert first.json() == {"run_id": f"{job['id']}.1"}
    # No executor in this test: the run stays in flight, so a second run now overlaps.
    second = await api.call("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR)
    assert second.status_code == 409
    assert "is running" in second.json()["error"]["message"]
    assert (await api.call("POST", f"/jobs/{job['id']}/run", role=Role.VIEWER)).status_code == 403


async def test_openapi_lists_the_all_jobs_fields(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    job_fields = set(document["components"]["schemas"]["JobView"]["properties"])
    guide_fields = {"id", "group", "name", "job_type", "created_at", "created_by", "state", "next_run",
                    "previous_run", "schedule_type", "expiration_date"}  # fmt: skip
    assert guide_fields <= job_fields


@pytest.mark.parametrize("cache_seconds", [0.0, 60.0])
async def test_a_revoked_token_is_refused_once_the_token_cache_lets_it_go(
    settings: CommonSettings, mongo: MongoClient, cache_seconds: float
) -> None:
    async with running_catalog(
        settings, mongo, with_scheduler=False, token_cache_seconds=cache_seconds
    ) as api:
        assert (await api.call("GET", "/jobs", role=Role.VIEWER)).status_code == 200
        tokens = mongo[settings.database("catalog")]["tokens"]
        assert (await tokens.delete_one({"name": "viewer-user"})).deleted_count == 1  # revoked
        after = await api.call("GET", "/jobs", role=Role.VIEWER)
        # Without a cache the very next request is refused; with one, only after `cache_seconds`
        # (the expiry itself is tested with a clock in tests/unit/test_catalog_domain.py).
        assert after.status_code == (401 if cache_seconds == 0 else 200)
        assert (await api.call("GET", "/jobs", role=Role.ADMIN)).status_code == 200
