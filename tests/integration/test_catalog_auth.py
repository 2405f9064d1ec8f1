"""Every mutating route refuses a missing token (401) and a role below the one it needs (403)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.catalog.domain import Role
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.catalog_api import Api, running_catalog

# (method, path, role needed). Ids need not exist: authorisation is checked before anything else.
MUTATING_ROUTES = [
    ("POST", "/connections", Role.ADMIN),
    ("POST", "/connections/host-key", Role.ADMIN),
    ("POST", "/connections/1/test", Role.ADMIN),
    ("POST", "/tables", Role.ADMIN),
    ("POST", "/jobs", Role.OPERATOR),
    ("PUT", "/jobs/1", Role.OPERATOR),
    ("PATCH", "/jobs/1", Role.OPERATOR),
    ("DELETE", "/jobs/1", Role.OPERATOR),
    ("POST", "/jobs/delete", Role.OPERATOR),
    ("POST", "/jobs/1/run", Role.OPERATOR),
    ("POST", "/jobs/1/stop", Role.OPERATOR),
    ("POST", "/jobs/1/copy", Role.OPERATOR),
    ("POST", "/jobs/1/activate", Role.OPERATOR),
    ("POST", "/jobs/1/deactivate", Role.OPERATOR),
    ("POST", "/groups", Role.OPERATOR),
    ("PUT", "/groups/1", Role.OPERATOR),
    ("DELETE", "/groups/1", Role.OPERATOR),
    ("POST", "/groups/1/run", Role.OPERATOR),
    ("POST", "/groups/1/stop", Role.OPERATOR),
    ("POST", "/groups/1/activate", Role.OPERATOR),
    ("POST", "/groups/1/deactivate", Role.OPERATOR),
]
READ_ROUTES = [
    "/jobs",
    "/jobs/1",
    "/groups",
    "/groups/1",
    "/tables",
    "/connections",
    "/runs",
    "/jobs/1/schedule-preview",
]


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


async def test_every_mutating_route_checks_token_and_role(api: Api) -> None:
    for method, path, needed in MUTATING_ROUTES:
        assert (await api.call(method, path, role=None, json={})).status_code == 401, (method, path)
        for role in Role:
            status = (await api.call(method, path, role=role, json={})).status_code
            if role < needed:
                assert status == 403, (method, path, role)
            else:
                assert status not in (401, 403), (method, path, role)


async def test_every_read_route_needs_a_token(api: Api) -> None:
    for path in READ_ROUTES:
        assert (await api.call("GET", path, role=None)).status_code == 401, path
        assert (await api.call("GET", path, role=Role.VIEWER)).status_code in (200, 404), path


async def test_health_and_metrics_need_no_token(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
