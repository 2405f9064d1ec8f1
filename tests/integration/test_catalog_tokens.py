"""API tokens on the real DB: create / list / revoke, expiry, last use, and failures rate-limited (429)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.catalog.adapters.repository import MongoCatalogRepository
from services.catalog.domain import Role
from services.catalog.service import issue_token
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.integration.test_catalog_auth import MUTATING_ROUTES
from tests.support.catalog_api import Api, running_catalog
from tests.support.waiting import eventually


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    # token cache on, as in production: revocation must still take effect on this replica at once
    async with running_catalog(settings, mongo, with_scheduler=False, auth_failure_limit=1000) as api:
        yield api


async def as_token(api: Api, token: str, method: str, path: str, **kwargs: Any) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return (await api.call(method, path, role=None, headers=headers, **kwargs)).status_code


async def test_create_list_use_and_revoke_a_token(api: Api) -> None:
    created = await api.ok("POST", "/tokens", json={"name": "ci", "role": "operator", "expires_in_days": 30})
    assert created["token"].startswith("cnt_") and created["role"] == "operator"
    assert created["expires_at"] is not None and created["last_used_at"] is None
    assert await as_token(api, created["token"], "GET", "/jobs") == 200

    listed = {t["id"]: t for t in (await api.ok("GET", "/tokens"))["items"]}
    mine = listed[created["id"]]
    assert mine["name"] == "ci" and not mine["revoked"] and "token" not in mine
    assert mine["last_used_at"] is not None  # the use above was recorded

    assert (await api.call("DELETE", f"/tokens/{created['id']}")).status_code == 204
    assert await as_token(api, created["token"], "GET", "/jobs") == 401  # at once, despite the cache
    listed = {t["id"]: t for t in (await api.ok("GET", "/tokens"))["items"]}
    assert listed[created["id"]]["revoked"] and listed[created["id"]]["revoked_at"] is not None
    assert (await api.call("DELETE", "/tokens/tok_nothere")).status_code == 404
    again = await api.call("DELETE", f"/tokens/{created['id']}")  # as a second DELETE of anything
    assert again.status_code == 404 and "already revoked" in again.json()["error"]["message"]

    # both changes are in the audit log, under the token's name, without the token itself
    trail = (await api.ok("GET", "/audit", params={"kind": "token", "item_id": "ci"}))["items"]
    assert sorted(e["action"] for e in trail) == ["created", "revoked"]
    assert created["token"] not in str(trail)


async def test_tokens_need_admin_and_a_valid_expiry(api: Api) -> None:
    assert (await api.call("GET", "/tokens", role=Role.OPERATOR)).status_code == 403
    assert (await api.call("POST", "/tokens", role=Role.OPERATOR, json={"name": "x"})).status_code == 403
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    refused = await api.call("POST", "/tokens", json={"name": "x", "expires_at": past})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "expires_at"


async def test_an_expired_token_is_refused(api: Api, settings: CommonSettings, mongo: MongoClient) -> None:
    repo = MongoCatalogRepository(mongo, settings.database("catalog"))
    soon = datetime.now(UTC) + timedelta(milliseconds=300)
    token = await issue_token(repo, "short", Role.ADMIN, expires_at=soon)
    gone = await issue_token(repo, "old", Role.ADMIN, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert await as_token(api, gone, "GET", "/jobs") == 401
    assert await as_token(api, token, "GET", "/jobs") == 200  # now cached, with its expiry

    async def refused() -> bool | None:
        return await as_token(api, token, "GET", "/jobs") == 401 or None

    await eventually(refused, what="the cached token to expire")


async def test_repeated_failures_get_429_with_retry_after(
    settings: CommonSettings, mongo: MongoClient
) -> None:
    async with running_catalog(settings, mongo, with_scheduler=False, auth_failure_limit=3) as api:
        for _ in range(3):
            assert await as_token(api, "cnt_wrong", "GET", "/jobs") == 401
        blocked = await api.call("GET", "/jobs", role=None, headers={"Authorization": "Bearer cnt_wrong"})
        assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
        # while blocked, even a valid token from that client waits: no more guesses to learn from
        assert (await api.call("GET", "/jobs", role=Role.ADMIN)).status_code == 429


def mutating_routes(api: Api) -> list[tuple[str, str]]:
    """Every mutating /api/v1 operation in the app's own OpenAPI document; ids need not exist."""
    found = []
    for path, operations in api.app.openapi()["paths"].items():
        for method in operations.keys() & {"post", "put", "patch", "delete"}:
            found.append((method.upper(), re.sub(r"\{[^}]+\}", "1", path.removeprefix("/api/v1"))))
    return found


async def test_every_mutating_route_refuses_bad_tokens_and_low_roles(
    api: Api, settings: CommonSettings, mongo: MongoClient
) -> None:
    repo = MongoCatalogRepository(mongo, settings.database("catalog"))
    expired = await issue_token(
        repo, "expired", Role.ADMIN, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    revoked = await api.ok("POST", "/tokens", json={"name": "revoked", "role": "admin"})
    await api.ok("DELETE", f"/tokens/{revoked['id']}")
    routes = mutating_routes(api)
    assert len(routes) > 20
    needed_by_table = {(m, p): r for m, p, r in MUTATING_ROUTES}
    for method, path in routes:
        assert (await api.call(method, path, role=None, json={})).status_code == 401, (method, path)
        for token in (expired, revoked["token"]):
            assert await as_token(api, token, method, path, json={}) == 401, (method, path)
        refused = {r for r in Role if (await api.call(method, path, role=r, json={})).status_code == 403}
        # viewers change nothing; admins may do everything; in between, a higher role may do more
        assert Role.VIEWER in refused and Role.ADMIN not in refused, (method, path, refused)
        needed = min(set(Role) - refused)
        assert refused == {r for r in Role if r < needed}, (method, path, refused)
        assert needed_by_table.get((method, path), needed) == needed, (method, path)
