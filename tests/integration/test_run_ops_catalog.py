"""Run now reads its job with the run-now requests that arrive meanwhile: a burst costs one query, not one each.

Nothing is cached: each read starts after its request arrived, so a job edited and run at once runs edited.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient

from services.catalog.domain import Role
from services.catalog.jobs import CoalescedReads
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.integration.test_catalog_jobs import setup_job
from tests.support.api import import_job
from tests.support.catalog_api import Api, running_catalog
from tests.support.commands import Commands


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo) as api:
        yield api


async def test_reads_asked_for_together_are_one_query_and_each_later_read_is_fresh(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    jobs = mongo[settings.database("catalog")]["jobs"]
    await jobs.insert_many([{"_id": i, "name": f"job {i}"} for i in range(1, 11)])
    commands = Commands()
    assert settings.mongo_url
    client: MongoClient = AsyncMongoClient(settings.mongo_url, tz_aware=True, event_listeners=[commands])
    counted = client[settings.database("catalog")]["jobs"]

    async def read(ids: list[int]) -> dict[int, dict[str, object]]:
        return {doc["_id"]: doc async for doc in counted.find({"_id": {"$in": ids}})}

    reads = CoalescedReads(read)
    try:
        found = await asyncio.gather(*(reads.get(i) for i in [*range(1, 11), 3, 99]))
        assert [doc["name"] if doc else None for doc in found] == [
            *(f"job {i}" for i in range(1, 11)), "job 3", None,
        ]  # fmt: skip
        assert commands.take() == {("find", "jobs"): 1}

        await jobs.update_one({"_id": 3}, {"$set": {"name": "edited"}})
        again = await reads.get(3)
        assert again is not None and again["name"] == "edited"  # read again, after the edit
        assert commands.take() == {("find", "jobs"): 1}
    finally:
        await client.close()
    await mongo.drop_database(settings.database("catalog"))


async def test_a_job_edited_and_run_at_once_runs_as_edited(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    job = await setup_job(api)
    body = import_job("edited", job["spec"]["source"]["connection_id"], "b.csv", "contacts") | {"version": 1}
    await api.ok("PUT", f"/jobs/{job['id']}", role=Role.OPERATOR, json=body)
    run = await api.ok("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR)
    outbox = mongo[settings.database("scheduler")]["outbox"]
    entry = await outbox.find_one({"types": "connect.run.requested.v1"})
    assert entry is not None
    requested = json.loads(entry["messages"][0])
    assert requested["data"]["run_id"] == run["run_id"]
    snapshot = requested["data"]["job"]
    assert snapshot["version"] == 2 and snapshot["spec"]["source"]["path"] == "b.csv"
