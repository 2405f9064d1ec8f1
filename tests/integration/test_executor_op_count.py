"""Database operations per run: the executor's share of a 1-row import stays at its budget (issue #14).

Counting is deterministic (no clock in it): the server's `serverStatus().opcounters` are diffed around
one run, and a command listener on the executor's own client names every command with its collection,
so a failure says which operation came back. The executor's share is what it does to run a run at all:
its lease (`run_leases`, which carries the table writer lock too) and the count of its rejects
(`run_rejects`); the data work (catalog reads, the audience writes) belongs to the import and is counted
beside it, not budgeted here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pymongo import AsyncMongoClient

from services.executor.audience import MongoAudienceStore
from services.executor.importers.run import ImportSettings
from services.executor.repository import (
    MongoCatalogReader,
    MongoLeaseStore,
    MongoRejectStore,
    MongoWatermarks,
)
from services.executor.service import ExecutionSettings, ExecutorService
from services.executor.table_writers import MongoTableWriters
from shared.contracts import RunStatus
from shared.mongo import MongoClient
from tests.support.commands import Commands
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)

# The lease: claimed and started in one write that takes the table's writer lock too, the result stored
# (ending the lock), marked reported once published (one write for all the runs published within a tenth
# of a lease; one here). Before #14: 12 (a log line cost one); then 3 plus 2 for the lock in
# `table_writers` and 1 to count the rejects.
LEASE_OPS_PER_RUN = 3
# The rejects of a first attempt are counted as they are saved: a run without any costs no operation.
REJECT_OPS_PER_RUN = 0
OP_KINDS = ("insert", "query", "update", "delete", "getmore", "command")


async def opcounters(mongo: MongoClient) -> Counter[str]:
    status = await mongo.admin.command("serverStatus")
    return Counter({kind: int(status["opcounters"].get(kind, 0)) for kind in OP_KINDS})


def counted_service(harness: Harness, client: MongoClient, executor_id: str) -> ExecutorService:
    s, db = harness.settings, harness.settings.database("executor")
    return ExecutorService(
        ExecutionSettings(
            executor_id=executor_id, concurrency=2, lease_seconds=30.0, progress_interval=0.5, max_attempts=2,
            retry_backoff=0.05, imports=ImportSettings(batch_size=1000, read_chunk_bytes=64 * 1024, max_in_flight=2),
        ),
        leases=MongoLeaseStore(client, db, 30.0),
        writers=MongoTableWriters(client, db, 30.0),
        catalog=MongoCatalogReader(client, s.database("catalog")),
        store=MongoAudienceStore(client, s.audience_database),
        rejects=MongoRejectStore(client, db),
        watermarks=MongoWatermarks(client, db),
        publisher=harness.events,
        secrets=harness.box,
    )  # fmt: skip


async def one_row_import(harness: Harness, run: int) -> tuple[list[tuple[str, str]], Counter[str], Any]:
    """One 1-row import through a fresh executor; its commands, the server's op delta, the result."""
    harness.write("in.csv", csv_text([["id", "email", "points"], ["c1", "a@example.com", str(run)]]))
    commands = Commands()
    assert harness.settings.mongo_url
    client: MongoClient = AsyncMongoClient(
        harness.settings.mongo_url, tz_aware=True, event_listeners=[commands]
    )
    try:
        service = counted_service(harness, client, executor_id=f"counted-{run}")
        await client.admin.command("ping")  # connect first: the handshake is not the run's
        commands.seen.clear()
        before = await opcounters(harness.mongo)
        request = harness.request(
            import_spec("in.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING),
            job_id=900,
            run=run,
        )
        await service.accept(request)
        finished = await harness.finished(request.data.run_id)
        await service.shutdown(grace=5)  # the reported mark follows the publish
        delta = await opcounters(harness.mongo) - before
        delta["command"] -= 1  # the second serverStatus itself
        return list(commands.seen), delta, finished
    finally:
        await client.close()


async def test_a_one_row_import_costs_the_executor_at_most_its_budget(harness: Harness) -> None:
    await harness.connection()
    await harness.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    await one_row_import(harness, run=1)  # the first run creates the table's collection and indexes
    # The server's counters are the whole server's: another client's heartbeat (`hello`, every 10 s per
    # client of this test process) can fall in a run's window. The executor's own operations are named
    # by the listener whatever happens; the server-side cross-check wants one window nobody else touched.
    for run in range(2, 5):
        seen, delta, finished = await one_row_import(harness, run=run)
        if delta.total() == len(seen):
            break

    assert finished.data.status == RunStatus.SUCCEEDED
    assert finished.data.counts.inserted + finished.data.counts.updated == 1
    lease_ops = [name for name, collection in seen if collection == "run_leases"]
    lock_ops = [name for name, collection in seen if collection == "table_writers"]  # the old lock's home
    reject_ops = [name for name, collection in seen if collection == "run_rejects"]
    print(f"\nrun: {seen}\nserver opcounters for the run: {dict(delta)} (total {delta.total()})")
    assert len(lease_ops) <= LEASE_OPS_PER_RUN, f"lease operations: {lease_ops}"
    assert lock_ops == [], f"writer lock operations outside the lease: {lock_ops}"
    assert len(reject_ops) <= REJECT_OPS_PER_RUN, f"reject operations: {reject_ops}"
    assert delta.total() == len(seen), "the server counted operations the executor's client did not send"
