"""Helpers to drive the running system through its HTTP API, as a user would."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


async def wait_for_run(api: httpx.AsyncClient, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the run until it has ended (bounded by `timeout`)."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await api.get(f"/runs/{run_id}")
        if response.status_code == 200:
            last = response.json()
            if last["ended"]:
                return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish within {timeout}s; last seen: {last}")


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
