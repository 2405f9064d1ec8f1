"""The table writer lock on the run lease, and reject counts kept in memory (issue #14), on the real server.

The lock is the lease's `writing` field under a partial unique index: the claim that starts an attempt
takes a free table with it, the stored result ends it, a dead holder's lock is free once its lease expired.
A first attempt counts its rejects as it saves them; a take-over counts what is stored.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from services.executor.domain import Rejection
from services.executor.repository import MongoLeaseStore, MongoRejectStore
from services.executor.table_writers import MongoTableWriters
from shared.contracts import RunRequested
from shared.contracts.runs import RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
    run_leases,
    table_holds,
)

TABLE = "table_contacts"


def stores(h: Harness) -> tuple[MongoLeaseStore, MongoTableWriters]:
    db = h.settings.database("executor")
    return MongoLeaseStore(h.mongo, db, 30), MongoTableWriters(h.mongo, db, 30)


def a_request(h: Harness, path: str = "in.csv") -> RunRequested:
    return h.request(import_spec(path, {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING))


async def expire(h: Harness, run_id: str) -> None:
    await run_leases(h).update_one(
        {"_id": run_id}, {"$set": {"expires_at": datetime(2000, 1, 1, tzinfo=UTC)}}
    )


async def test_the_claim_takes_a_free_tables_lock_and_the_stored_result_ends_it(harness: Harness) -> None:
    h = harness
    leases, writers = stores(h)
    first, second = a_request(h), a_request(h)
    claim = await leases.claim_and_start(first, "exec-a", TABLE)
    assert claim is not None and claim.table == TABLE and not claim.continued
    behind = await leases.claim_and_start(second, "exec-b", TABLE)  # claimed, without the table
    assert behind is not None and behind.table is None and behind.attempt == 1

    refused = await writers.acquire(TABLE, second.data.run_id, "exec-b")
    assert (refused.acquired, refused.holder) == (False, first.data.run_id)
    assert await leases.finish(first.data.run_id, "exec-a", "{}")
    taken = await writers.acquire(TABLE, second.data.run_id, "exec-b")
    assert taken.acquired and not taken.continued
    assert await table_holds(h) == [{"table": TABLE, "run_id": second.data.run_id, "owner": "exec-b"}]


async def test_of_runs_claimed_at_once_on_one_table_exactly_one_takes_its_lock(harness: Harness) -> None:
    h = harness
    leases, _ = stores(h)
    requests = [a_request(h) for _ in range(8)]
    claims = await asyncio.gather(
        *(leases.claim_and_start(r, f"exec-{n}", TABLE) for n, r in enumerate(requests))
    )
    assert all(c is not None for c in claims)  # every run claimed
    assert [c.run_id for c in claims if c is not None and c.table == TABLE] == [
        d["run_id"] for d in await table_holds(h)
    ]
    assert len(await table_holds(h)) == 1


async def test_a_dead_holders_lock_is_free_after_its_lease_and_its_renewal_then_shows_the_loss(
    harness: Harness,
) -> None:
    h = harness
    leases, writers = stores(h)
    dead, other = a_request(h), a_request(h)
    assert (await leases.claim_and_start(dead, "exec-a", TABLE)) is not None
    assert (await leases.claim_and_start(other, "exec-b")) is not None
    assert not (await writers.acquire(TABLE, other.data.run_id, "exec-b")).acquired  # live: it waits
    await expire(h, dead.data.run_id)  # its executor stalled longer than a lease
    assert (await writers.acquire(TABLE, other.data.run_id, "exec-b")).acquired
    # The stalled executor's heartbeat renews its lease, and learns that the lock is gone (TABLE_LOST).
    renewal = await leases.renew(dead.data.run_id, "exec-a")
    assert renewal.held and renewal.writing is None
    # Its take-over (attempt 2) cannot take the table with its claim: the other run holds it.
    await expire(h, dead.data.run_id)
    taken_over = await leases.claim_and_start(dead, "exec-c", TABLE)
    assert taken_over is not None and taken_over.attempt == 2 and taken_over.table is None


async def test_a_take_over_nobody_displaced_keeps_the_table_and_continues(harness: Harness) -> None:
    h = harness
    leases, _ = stores(h)
    request = a_request(h)
    assert (await leases.claim_and_start(request, "exec-a", TABLE)) is not None
    await expire(h, request.data.run_id)
    taken_over = await leases.claim_and_start(request, "exec-b", TABLE)
    assert taken_over is not None and taken_over.table == TABLE and taken_over.continued
    assert (await leases.renew(request.data.run_id, "exec-b")).writing == TABLE


async def test_a_take_over_that_waits_for_a_slot_frees_the_table_meanwhile(harness: Harness) -> None:
    h = harness
    leases, writers = stores(h)
    dead, other = a_request(h), a_request(h)
    assert (await leases.claim_and_start(dead, "exec-a", TABLE)) is not None
    await expire(h, dead.data.run_id)
    assert await leases.claim(dead, "exec-busy")  # no free slot there: it waits, holding no table
    assert (await leases.claim_and_start(other, "exec-b")) is not None
    assert (await writers.acquire(TABLE, other.data.run_id, "exec-b")).acquired
    started = await leases.start(dead.data.run_id, "exec-busy", TABLE)  # its slot: claimed without it
    assert started is not None and started.table is None and started.attempt == 2


def rejection(line: int, file: int = 0) -> Rejection:
    return Rejection(line, "points", "not an integer", file, record=f"row {line}")


async def test_a_first_attempt_counts_its_rejects_as_it_saves_them(harness: Harness) -> None:
    h = harness
    stored = MongoRejectStore(h.mongo, h.settings.database("executor"))
    counting = stored.counting("5.1")
    await counting.save("5.1", [rejection(2), rejection(4), rejection(3, file=1)])
    await counting.save("5.1", [rejection(4), rejection(7)])  # a retry rejects line 4 again: no new reject
    assert (await counting.count("5.1"), await counting.count("5.1", 0), await counting.count("5.1", 1)) == (
        4,
        3,
        1,
    )
    assert await counting.files("5.1") == [0, 1]
    # What is stored agrees (the plain store queries it).
    assert (await stored.count("5.1"), await stored.count("5.1", 0), await stored.files("5.1")) == (
        4,
        3,
        [0, 1],
    )


async def test_a_taken_over_run_counts_the_rejects_an_earlier_holder_saved(harness: Harness) -> None:
    """The dead holder saved the reject of line 3; the take-over loads the whole file again (no checkpoint)
    and rejects lines 3 and 5: it reports 2, what is stored, not the 1 its own saves inserted."""
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("in.csv", csv_text([["id", "email", "points"], ["C1", "c1@x.io", "1"], ["C2", "c2@x.io", "two"],
                                ["C3", "c3@x.io", "3"], ["C4", "c4@x.io", "four"]]))  # fmt: skip
    request = a_request(h)
    run_id = request.data.run_id
    lease: dict[str, Any] = {
        "_id": run_id, "request": request.model_dump_json(), "status": "running", "phase": "attempting",
        "owner": "dead", "attempt": 1, "log_seq": 0, "started_at": datetime.now(UTC),
        "expires_at": datetime(2000, 1, 1, tzinfo=UTC),
    }  # fmt: skip
    await run_leases(h).insert_one(lease)
    await MongoRejectStore(h.mongo, h.settings.database("executor")).save(run_id, [rejection(3)])
    service = h.service(executor_id="successor")
    assert await service.take_over_expired() == 1
    done = await h.finished(run_id)
    assert done.data.status == RunStatus.PARTIAL
    assert (done.data.counts.rejected, done.data.counts.inserted + done.data.counts.updated) == (2, 2)
    assert await table_holds(h) == []  # the stored result ended the lock
