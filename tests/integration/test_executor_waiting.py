"""Runs waiting for an executor slot (issue 13, item 2): claimed at once (the delivery can be acknowledged),
waiting inside the executor with a renewed lease and no attempt counted; taken over by an idle executor,
handed over at once on SIGTERM, stoppable while they wait."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from services.executor.service import ExecutorService
from shared.contracts import RunFinished, RunRequested, RunStarted
from shared.contracts.runs import RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)


def spec(path: str, table: str) -> dict[str, Any]:
    return import_spec(path, {"kind": "custom", "table": table, "mode": "append"}, CONTACT_MAPPING)


async def busy_with_a_long_run(
    h: Harness, executor_id: str
) -> tuple[ExecutorService, RunRequested, RunRequested]:
    """An executor with one slot running a run that lasts until `let_the_long_run_end`, and a second run
    claimed behind it. The long run waits for the table's writer lock, which a foreign run holds."""
    await h.connection()
    for table in ("contacts", "others"):
        await h.table(table, CONTACT_FIELDS, primary_key=("customer_id",))
    until = datetime.now(UTC) + timedelta(hours=1)
    await writer_locks(h).insert_one(  # a foreign run's live lease, carrying the table's writer lock
        {"_id": "0.1", "owner": "x", "status": "running", "expires_at": until, "writing": "table_contacts"}
    )
    h.write("long.csv", csv_text([["id", "email", "points"], ["L1", "l1@x.io", "1"]]))
    h.write("short.csv", csv_text([["id", "email", "points"], ["S1", "s1@x.io", "1"]]))
    busy = h.service(executor_id=executor_id, concurrency=1)
    long_run, short_run = h.request(spec("long.csv", "contacts")), h.request(spec("short.csv", "others"))
    assert await busy.accept(long_run)
    await h.until(
        lambda: any(line.startswith("waiting for run") for line in h.events.logs(long_run.data.run_id)),
        timeout=30,
    )
    assert await busy.accept(short_run)  # returns with the claim durable, though no slot is free
    return busy, long_run, short_run


def writer_locks(h: Harness) -> Any:
    return h.mongo[h.settings.database("executor")]["run_leases"]  # the lock is a field of the lease


async def let_the_long_run_end(h: Harness) -> None:
    await writer_locks(h).update_one({"_id": "0.1"}, {"$unset": {"writing": ""}})


async def lease(h: Harness, run_id: str) -> dict[str, Any]:
    doc = await h.mongo[h.settings.database("executor")]["run_leases"].find_one({"_id": run_id})
    assert doc is not None
    return doc  # type: ignore[no-any-return]


async def test_a_claimed_run_waits_for_the_slot_with_its_lease_and_counts_one_attempt(
    harness: Harness,
) -> None:
    h = harness
    _, long_run, short_run = await busy_with_a_long_run(h, "busy")
    waiting = await lease(h, short_run.data.run_id)
    assert (waiting["owner"], waiting["phase"], waiting["attempt"]) == ("busy", "waiting", 0)
    assert h.events.of(short_run.data.run_id, RunStarted) == []
    await let_the_long_run_end(h)

    first, second = await h.finished(long_run.data.run_id), await h.finished(short_run.data.run_id)
    assert (first.data.status, second.data.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED)
    assert second.data.started_at >= first.data.finished_at  # it ran after the slot was freed
    assert (await lease(h, short_run.data.run_id))["attempt"] == 1


async def test_an_idle_executor_takes_over_a_run_waiting_on_a_busy_one(harness: Harness) -> None:
    h = harness
    busy, long_run, short_run = await busy_with_a_long_run(h, "busy")
    copy = busy.active[short_run.data.run_id].task
    assert copy is not None
    idle = h.service(executor_id="idle", concurrency=1)
    assert await idle.take_over_expired() == 1

    done = await h.finished(short_run.data.run_id)
    assert done.data.status == RunStatus.SUCCEEDED
    assert [m.data.executor for m in h.events.of(short_run.data.run_id, RunStarted)] == ["idle"]
    assert (await lease(h, short_run.data.run_id))["attempt"] == 1
    assert not h.events.of(long_run.data.run_id, RunFinished)
    await let_the_long_run_end(h)
    await h.finished(long_run.data.run_id)
    await asyncio.wait_for(copy, timeout=30)  # the busy executor's copy lets go (its slot finds it taken)
    assert short_run.data.run_id not in busy.active
    assert len(h.events.of(short_run.data.run_id, RunFinished)) == 1


async def test_sigterm_hands_a_waiting_run_over_at_once(harness: Harness) -> None:
    h = harness
    busy, long_run, short_run = await busy_with_a_long_run(h, "stopping")
    await busy.shutdown(grace=0)
    successor = h.service(executor_id="successor")
    assert await successor.take_over_expired() == 2  # no wait for the leases to expire

    done = await h.finished(short_run.data.run_id)
    assert done.data.status == RunStatus.SUCCEEDED
    assert (await lease(h, short_run.data.run_id))["attempt"] == 1  # waiting was no attempt
    await let_the_long_run_end(h)
    assert (await h.finished(long_run.data.run_id)).data.status == RunStatus.SUCCEEDED


async def test_a_run_stopped_while_it_waits_ends_stopped_without_waiting(harness: Harness) -> None:
    h = harness
    busy, long_run, short_run = await busy_with_a_long_run(h, "busy")
    assert busy.request_stop(short_run.data.run_id)

    stopped = await asyncio.wait_for(h.finished(short_run.data.run_id), timeout=30)
    assert stopped.data.status == RunStatus.STOPPED
    # It never had a slot, so it did no work: no connection, no table taken.
    logs = h.events.logs(short_run.data.run_id)
    assert "stopped on request" in logs
    assert not any(line.startswith(("connected to", "waiting for run")) for line in logs), logs
    assert not h.events.of(long_run.data.run_id, RunFinished)
    await let_the_long_run_end(h)
