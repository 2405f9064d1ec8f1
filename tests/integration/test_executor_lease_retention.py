"""Finished run leases are not kept forever (issue #14's growth of `run_leases`): the database removes a finished
lease EXECUTOR_FINISHED_LEASE_DAYS after its run ended; a live lease has nothing that expires."""

from __future__ import annotations

from typing import Any

from services.executor.repository import MongoLeaseStore
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.support.executor_harness import CONTACT_MAPPING, import_spec, run_request


def ttl_indexes(indexes: dict[str, Any]) -> list[tuple[list[tuple[str, int]], int]]:
    return [
        (spec["key"], spec["expireAfterSeconds"]) for spec in indexes.values() if "expireAfterSeconds" in spec
    ]


async def test_finished_leases_expire_after_the_retention_and_live_ones_never(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    db = settings.database("executor")
    leases = MongoLeaseStore(mongo, db, lease_seconds=30, finished_retention_days=7)
    await leases.ensure_indexes()
    finished, live = (
        run_request(
            import_spec("in.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING), job_id=job
        )
        for job in (1, 2)
    )
    for request in (finished, live):
        assert await leases.claim(request, "executor-1")
        assert await leases.start(request.data.run_id, "executor-1") is not None
    assert await leases.finish(finished.data.run_id, "executor-1", "{}")

    assert ttl_indexes(await mongo[db]["run_leases"].index_information()) == [
        ([("finished_at", 1)], 7 * 86400)
    ]
    stored = {d["_id"]: d async for d in mongo[db]["run_leases"].find({})}
    assert "finished_at" in stored[finished.data.run_id]
    assert "finished_at" not in stored[live.data.run_id]  # nothing for the TTL monitor to remove
    # The retention is a setting: a changed one adjusts the index in place at the next start.
    await MongoLeaseStore(mongo, db, lease_seconds=30, finished_retention_days=30).ensure_indexes()
    assert ttl_indexes(await mongo[db]["run_leases"].index_information()) == [
        ([("finished_at", 1)], 30 * 86400)
    ]
