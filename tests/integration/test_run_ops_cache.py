"""The executor's cache of table definitions: read once per process, correct because they never change.

A table definition is immutable (the catalog inserts it and nothing updates, replaces or deletes it), so
`MongoCatalogReader` keeps each one it read; connections, whose secrets are rotated in place, are read
every time. The last test is the tripwire: the day the catalog's API can change a table, it fails, and the
cache must be keyed by a version the run request carries before that route ships.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.routing import APIRoute
from pymongo import AsyncMongoClient

from services.catalog.api import groups, jobs, resources, runs
from services.executor.repository import MongoCatalogReader
from shared.errors import NotFound
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.support.commands import Commands

NOW = datetime(2026, 12, 2, tzinfo=UTC)


async def test_a_table_is_read_once_a_missing_one_again_and_a_connection_every_time(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    catalog = mongo[settings.database("catalog")]
    await catalog["connections"].insert_one(
        {"_id": 7, "kind": "sftp", "name": "c", "host": "h", "created_at": NOW, "created_by": "t"}
    )
    await catalog["tables"].insert_one(
        {"name": "t1", "kind": "custom", "primary_key": ["k"], "created_at": NOW, "created_by": "t",
         "fields": [{"name": "k", "type": "string"}]}
    )  # fmt: skip
    commands = Commands()
    assert settings.mongo_url
    client: MongoClient = AsyncMongoClient(settings.mongo_url, tz_aware=True, event_listeners=[commands])
    try:
        reader = MongoCatalogReader(client, settings.database("catalog"))
        for _ in range(3):
            assert (await reader.connection(7)).host == "h"
            assert (await reader.table("t1")).primary_key == ("k",)
        assert commands.take() == {("find", "connections"): 3, ("find", "tables"): 1}
        await catalog["connections"].update_one({"_id": 7}, {"$set": {"host": "rotated"}})
        assert (await reader.connection(7)).host == "rotated"
        commands.take()

        with pytest.raises(NotFound):
            await reader.table("t2")
        await catalog["tables"].insert_one(
            {"name": "t2", "kind": "custom", "primary_key": ["k"], "created_at": NOW, "created_by": "t",
             "fields": [{"name": "k", "type": "string"}]}
        )  # fmt: skip
        assert (await reader.table("t2")).name == "t2"  # created after the miss: found, not a cached miss
        assert commands.take() == {("find", "tables"): 2}
    finally:
        await client.close()


def test_no_catalog_route_can_change_a_table() -> None:
    """Tables are created, never changed."""
    allowed = {("POST", "/api/v1/tables")}
    changing = [
        (method, route.path)
        for router in (resources.router, jobs.router, groups.router, runs.router)
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.startswith("/api/v1/tables")
        for method in route.methods or ()
        if method not in ("GET", "HEAD") and (method, route.path) not in allowed
    ]
    assert changing == [], (
        f"{changing} can change a table definition, which MongoCatalogReader caches for good: key its cache "
        "by a version the run request carries first (services/executor/repository.py)"
    )
