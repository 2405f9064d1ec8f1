"""Finished run leases are not kept forever (issue #14's growth of `run_leases`): the executor removes a
finished, reported lease EXECUTOR_FINISHED_LEASE_DAYS after its run ended; a live lease or a result not yet
reported stays, and a run whose lease is still kept is never run again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.executor.repository import MongoLeaseStore
from shared.contracts import RunRequested
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.support.executor_harness import CONTACT_MAPPING, import_spec, run_request


def request(job_id: int) -> RunRequested:
    return run_request(
        import_spec("in.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING), job_id=job_id
    )


async def test_only_reported_leases_older_than_the_retention_are_pruned(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    db = settings.database("executor")
    leases = MongoLeaseStore(mongo, db, lease_seconds=30, finished_retention_days=7)
    await leases.ensure_indexes()
    old, old_unreported, recent, live = (request(job) for job in (1, 2, 3, 4))
    for each in (old, old_unreported, recent, live):
        assert await leases.claim(each, "executor-1")
        assert await leases.start(each.data.run_id, "executor-1") is not None
    for each in (old, old_unreported, recent):
        assert await leases.finish(each.data.run_id, "executor-1", "{}")
    await leases.mark_reported([old.data.run_id, recent.data.run_id])
    eight_days_ago = datetime.now(UTC) - timedelta(days=8)
    await mongo[db]["run_leases"].update_many(
        {"_id": {"$in": [old.data.run_id, old_unreported.data.run_id]}},
        {"$set": {"finished_at": eight_days_ago}},
    )

    assert await leases.prune_finished() == 1
    kept = {d["_id"] async for d in mongo[db]["run_leases"].find({})}
    assert kept == {old_unreported.data.run_id, recent.data.run_id, live.data.run_id}
    assert await leases.claim_and_start(recent, "executor-2") is None  # kept: a late duplicate is refused
    assert await leases.prune_finished() == 0
