"""Helpers to drive the running system through its HTTP API, as a user would."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.waiting import eventually


async def wait_for_run(api: httpx.AsyncClient, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the run until it has ended (bounded by `timeout`); the ended run."""
    return await _until_ended(api, f"/runs/{run_id}", f"run {run_id} to end", timeout)


async def wait_for_group_run(
    api: httpx.AsyncClient, group_run_id: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the group run until it has ended (bounded by `timeout`); the ended group run."""
    return await _until_ended(api, f"/group-runs/{group_run_id}", f"group run {group_run_id} to end", timeout)


async def _until_ended(api: httpx.AsyncClient, path: str, what: str, timeout: float) -> dict[str, Any]:
    """The view at `path` once it says `ended`; a timeout's message shows the last view seen."""

    async def view() -> dict[str, Any] | None:
        response = await api.get(path)
        return dict(response.json()) if response.status_code == 200 else None

    return await eventually(view, until=lambda seen: seen["ended"], what=what, timeout=timeout, interval=0.2)


def contacts_table(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "custom",
        "primary_key": ["customer_id"],
        "fields": [
            {"name": "customer_id", "type": "string", "required": True},
            {"name": "email", "type": "email", "required": True},
            {"name": "points", "type": "integer"},
        ],
    }


def import_job(name: str, connection_id: int, path: str, table: str) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "kind": "import",
            "source": {"kind": "sftp", "connection_id": connection_id, "path": path},
            "mapping": [
                {"column": "id", "field": "customer_id"},
                {"column": "email", "field": "email"},
                {"column": "points", "field": "points"},
            ],
            "target": {"kind": "custom", "table": table, "mode": "merge"},
        },
    }
