"""The catalog in-process (with a real scheduler beside it) and a client that scans every response."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from services.catalog.adapters.repository import MongoCatalogRepository
from services.catalog.config import CatalogSettings
from services.catalog.domain import Role
from services.catalog.main import build_app as build_catalog
from services.catalog.service import issue_token
from shared.mongo import MongoClient
from shared.settings import CommonSettings

SECRET_PASSWORD = "s3cret-Password-never-shown"
SECRET_TOKEN = "rest-T0ken-never-shown"
FAKE_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKTAwE5D2EZ7AEei9HykCvPFvSHoQP9lVYnj62JTy6g3"  # a real key; no server has it


class Api:
    """Calls the API as a given role and remembers every response, so a test can scan them all."""

    def __init__(self, app: FastAPI, tokens: dict[Role, str]) -> None:
        self.app = app
        self.tokens = tokens
        self.responses: list[httpx.Response] = []

    async def call(
        self, method: str, path: str, role: Role | None = Role.ADMIN, **kwargs: Any
    ) -> httpx.Response:
        headers: dict[str, str] = dict(kwargs.pop("headers", {}))
        if role:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
            response = await client.request(method, f"/api/v1{path}", headers=headers, **kwargs)
        self.responses.append(response)
        return response

    async def ok(self, method: str, path: str, role: Role | None = Role.ADMIN, **kwargs: Any) -> Any:
        response = await self.call(method, path, role, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def assert_statuses_documented(self) -> None:
        assert_statuses_documented(self.app.openapi(), self.responses)

    def assert_no_secret_leaked(self) -> None:
        for response in self.responses:
            text = response.text
            for secret in (SECRET_PASSWORD, SECRET_TOKEN, "PRIVATE KEY", "_encrypted"):
                assert secret not in text, f"{secret!r} leaked in {response.request.url}"


@asynccontextmanager
async def running_catalog(
    settings: CommonSettings,
    mongo: MongoClient,
    *,
    with_scheduler: bool = True,
    token_cache_seconds: float = 5.0,
    auth_failure_limit: int = 10,
) -> AsyncIterator[Api]:
    catalog_settings = CatalogSettings(
        run_request_timeout=5,
        max_body_bytes=200_000,
        token_cache_seconds=token_cache_seconds,
        auth_failure_limit=auth_failure_limit,
    )
    catalog = build_catalog(settings, catalog_settings)
    async with AsyncExitStack() as stack:
        if with_scheduler:
            from services.scheduler.main import build_app as build_scheduler  # only where run now is tested

            scheduler = build_scheduler(settings)
            await stack.enter_async_context(scheduler.router.lifespan_context(scheduler))
        await stack.enter_async_context(catalog.router.lifespan_context(catalog))
        repo = MongoCatalogRepository(mongo, settings.database("catalog"))
        tokens = {role: await issue_token(repo, f"{role.name.lower()}-user", role) for role in Role}
        api = Api(catalog, tokens)
        yield api
        api.assert_no_secret_leaked()
        api.assert_statuses_documented()
    for service in ("catalog", "scheduler", "audience", "logsink"):
        await mongo.drop_database(settings.database(service))


Operation = tuple[str, re.Pattern[str], set[str]]  # method, path pattern, documented statuses


def documented_operations(document: dict[str, Any]) -> list[Operation]:
    """The document's operations, literal paths first (`/jobs/run` before `/jobs/{job_id}`)."""
    found = []
    for path, methods in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path)) + "$")
        for method, operation in methods.items():
            found.append((method.upper(), pattern, set(operation["responses"])))
    return sorted(found, key=lambda operation: operation[1].pattern.count("[^/]+"))


def statuses_of(operations: list[Operation], method: str, path: str) -> set[str] | None:
    return next(
        (statuses for m, pattern, statuses in operations if m == method and pattern.match(path)), None
    )


def assert_statuses_documented(document: dict[str, Any], responses: list[httpx.Response]) -> None:
    """Every answer's status is one its operation documents: the OpenAPI document tells the truth."""
    operations = documented_operations(document)
    for response in responses:
        request = response.request
        documented = statuses_of(operations, request.method, request.url.path)
        if documented is not None:  # None: not an operation of the document (the console's pages)
            assert str(response.status_code) in documented, (
                f"{request.method} {request.url.path} answered {response.status_code}, "
                f"its operation documents {sorted(documented)}: {body_of(response)[:300]}"
            )


@asynccontextmanager
async def checked_client(base_url: str, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a running catalog's API (`base_url` ends in /api/v1); once done, every answer's status
    must be one its operation documents."""
    responses: list[httpx.Response] = []

    async def remember(response: httpx.Response) -> None:
        responses.append(response)

    hooks = {"response": [remember]}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, event_hooks=hooks) as client:
        document = (await client.get("/openapi.json")).json()  # now: a test may stop the catalog
        yield client
    assert_statuses_documented(document, responses)


def body_of(response: httpx.Response) -> str:
    try:
        return response.text
    except httpx.ResponseNotRead:  # a stream closed unread
        return ""


async def sftp_connection(api: Api, name: str = "sftp", base_dir: str = "/in") -> int:
    body = {"name": name, "host": "127.0.0.1", "port": 22, "username": "u", "password": SECRET_PASSWORD,
            "host_key": FAKE_HOST_KEY, "base_dir": base_dir}  # fmt: skip
    return int((await api.ok("POST", "/connections", json=body))["id"])
