"""The catalog's REST API in-process, with the real database, broker and a real scheduler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from fastapi import FastAPI

from services.catalog.config import CatalogSettings
from services.catalog.domain import Role
from services.catalog.main import build_app as build_catalog
from services.catalog.repository import MongoCatalogRepository
from services.catalog.service import issue_token
from services.scheduler.main import build_app as build_scheduler
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job

SECRET_PASSWORD = "s3cret-Password-never-shown"


class Api:
    def __init__(self, app: FastAPI, tokens: dict[Role, str]) -> None:
        self.app = app
        self.tokens = tokens
        self.responses: list[httpx.Response] = []

    async def call(
        self, method: str, path: str, role: Role | None = Role.ADMIN, **kwargs: object
    ) -> httpx.Response:
        headers: dict[str, str] = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
        if role:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
            response = await client.request(method, f"/api/v1{path}", headers=headers, **kwargs)  # type: ignore[arg-type]
        self.responses.append(response)
        return response


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    catalog = build_catalog(settings, CatalogSettings(run_request_timeout=5, max_body_bytes=20_000))
    scheduler = build_scheduler(settings)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(scheduler.router.lifespan_context(scheduler))
        await stack.enter_async_context(catalog.router.lifespan_context(catalog))
        repo = MongoCatalogRepository(mongo, settings.database("catalog"))
        tokens = {role: await issue_token(repo, f"{role.name.lower()}-user", role) for role in Role}
        api = Api(catalog, tokens)
        yield api
        for response in api.responses:  # secrets never leave the API, whatever the route
            assert SECRET_PASSWORD not in response.text
            assert "PRIVATE KEY" not in response.text
            assert "encrypted" not in response.text
    for service in ("catalog", "scheduler"):
        await mongo.drop_database(settings.database(service))


async def make_connection(api: Api) -> int:
    response = await api.call(
        "POST", "/connections",
        json={"name": "sftp", "host": "127.0.0.1", "port": 22, "username": "u", "password": SECRET_PASSWORD,
              "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLACEHOLDERKEYFORTESTS0000000000000", "base_dir": "/in"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


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
    assert escaping.json()["error"]["field"] == "path"
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
        "POST", "/tables", content=b"x" * 30_000, headers={"Content-Type": "application/json"}
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
