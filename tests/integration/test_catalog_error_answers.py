"""Each operation answers the errors its OpenAPI document lists, for the reasons the document gives: 413 for
an oversized body, 400 for a body that is not text (JSON that is not well formed is a 422) or a missing
confirmation, 401 without a token, 403 for a role too low, 503 when the database does not answer.
(`running_catalog` also checks, after every test, that each answer's status is one its operation documents.)"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from services.catalog.config import CatalogSettings
from services.catalog.domain import Role
from services.catalog.main import build_app
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.catalog_api import Api, documented_operations, running_catalog, statuses_of

MAX_BODY = 200_000  # running_catalog's CATALOG_MAX_BODY_BYTES


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


def operations(api: Api) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path with every id 1, the operation) of every operation of the document."""
    for path, methods in api.app.openapi()["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), re.sub(r"\{[^}]+\}", "1", path.removeprefix("/api/v1")), operation


async def test_every_operation_with_a_body_refuses_an_oversized_one_with_413(api: Api) -> None:
    with_body = [(method, path) for method, path, operation in operations(api) if "requestBody" in operation]
    oversized = b'{"name": "' + b"x" * MAX_BODY + b'"}'

    for method, path in with_body:
        response = await api.call(
            method, path, content=oversized, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413, (method, path, response.text)
        assert response.json()["error"]["code"] == "payload_too_large"
    assert len(with_body) >= 10


async def test_every_operation_with_a_body_answers_400_to_one_that_is_not_text(api: Api) -> None:
    for method, path, operation in operations(api):
        if "requestBody" in operation:
            response = await api.call(
                method, path, content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, (method, path, response.text)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("DELETE", "/jobs/1", None),
        ("POST", "/jobs/1/stop", None),
        ("POST", "/jobs/delete", {"ids": [1]}),
        ("DELETE", "/groups/1", None),
        ("POST", "/groups/1/stop", None),
    ],
)
async def test_a_missing_confirmation_is_a_400_confirmation_required(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await api.call(method, path, json=body)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "confirmation_required",
        "message": response.json()["error"]["message"],
        "field": "confirm",
    }


async def test_401_without_a_token_and_403_exactly_where_the_document_says_a_viewer_is_refused(
    api: Api,
) -> None:
    refused_viewer = []
    for method, path, operation in operations(api):
        assert (await api.call(method, path, role=None)).status_code == 401, (method, path)
        as_viewer = await api.call(method, path, role=Role.VIEWER)
        assert (as_viewer.status_code == 403) == ("403" in operation["responses"]), (
            method,
            path,
            as_viewer.text,
        )
        refused_viewer += [operation["operationId"]] if as_viewer.status_code == 403 else []
    assert {"createJob", "runJob", "listTokens", "createConnection"} <= set(refused_viewer)
    assert not {"listJobs", "getJob", "listRuns"} & set(refused_viewer)


async def test_a_database_that_does_not_answer_is_a_documented_503(settings: CommonSettings) -> None:
    dead = settings.model_copy(update={"mongo_url": "mongodb://127.0.0.1:9/?directConnection=true"})
    app = build_app(dead, CatalogSettings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog", timeout=60) as client:
        response = await client.get("/api/v1/jobs", headers={"Authorization": "Bearer cnt_any"})

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "retryable"
    assert "503" in (statuses_of(documented_operations(app.openapi()), "GET", "/api/v1/jobs") or set())
