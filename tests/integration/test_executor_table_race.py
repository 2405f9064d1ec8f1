"""Runs of one executor taking turns at one table while their heartbeats renew their leases (issue #14's
run-overhead bench stalled on it: two runs waited for each other until the round's deadline).

A renewal on its way while the run takes the table reads the lease before the table is on it: that is no
loss. And should a run here stop an attempt for a loss the database does not show, the database's holder
goes first: no two runs here wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pytest

from services.executor.audience import BulkOutcome
from services.executor.ports import Renewal, TableHold
from services.executor.service import ExecutorService
from shared.contracts.runs import RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
    table_holds,
)

LEASE = 1.5  # a renewal every half second
RUNS, ROWS = 3, 3


def spec(n: int) -> dict[str, Any]:
    return import_spec(f"run{n}.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING)


async def setup(h: Harness) -> ExecutorService:
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    for n in range(RUNS):  # a batch a row: a stop is seen before the run's next write
        rows = [[f"K{n}.{k}", f"k{n}.{k}@x.io", str(k)] for k in range(ROWS)]
        h.write(f"run{n}.csv", csv_text([["id", "email", "points"], *rows]))
    return h.service(lease_seconds=LEASE, concurrency=RUNS, max_attempts=3, batch_size=1, in_flight=1)


async def run_all(h: Harness, service: ExecutorService) -> list[str]:
    requests = [h.request(spec(n)) for n in range(RUNS)]
    for request in requests:
        assert await service.accept(request)
    run_ids = [r.data.run_id for r in requests]
    for run_id in run_ids:  # two runs waiting for each other never end: the timeout says so
        done = await h.finished(run_id, timeout=30)
        assert done.data.status == RunStatus.SUCCEEDED, (done.data.error, h.events.logs(run_id))
    assert await table_holds(h) == []
    stored = [r["customer_id"] for r in await h.rows("contacts", "customer_id")]
    assert stored == sorted(f"K{n}.{k}" for n in range(RUNS) for k in range(ROWS))
    return run_ids


async def until(event: asyncio.Event, timeout: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


async def test_a_renewal_read_before_the_run_took_the_table_is_no_loss(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    service = await setup(h)
    renew, acquire = service.leases.renew, service.writers.acquire
    acquired: dict[str, asyncio.Event] = {}
    waiter_read, late = asyncio.Event(), []  # a waiting run's renewal has read its lease (no table on it)

    async def answer_once_the_table_is_taken(run_id: str, owner: str) -> Renewal:
        renewal = await renew(run_id, owner)
        if renewal.writing is None:
            waiter_read.set()
            # Answered once the run took the table (within 2/3 of a lease: the lease must not expire).
            if await until(acquired.setdefault(run_id, asyncio.Event()), LEASE * 0.6):
                late.append(run_id)
                while run_id in service.active and not service.active[run_id].tables:
                    await asyncio.sleep(0.001)  # until its `acquire` has returned (no I/O left in it)
        return renewal

    async def acquire_and_hold_until_a_waiter_renewed(table: str, run_id: str, owner: str) -> TableHold:
        hold = await acquire(table, run_id, owner)
        if hold.acquired:
            acquired.setdefault(run_id, asyncio.Event()).set()
            # Held until a waiting run's renewal is on its way: the next run takes the table meanwhile.
            await until(waiter_read, LEASE * 3)
        return hold

    monkeypatch.setattr(service.leases, "renew", answer_once_the_table_is_taken)
    monkeypatch.setattr(service.writers, "acquire", acquire_and_hold_until_a_waiter_renewed)
    run_ids = await run_all(h, service)
    assert late, "no renewal was on its way while its run took the table"
    assert not [r.message for r in caplog.records if "writer lock lost" in r.message]
    for run_id in run_ids:
        assert not any("writer lock" in line for line in h.events.logs(run_id)), h.events.logs(run_id)


async def test_a_run_that_stopped_for_a_loss_it_did_not_have_blocks_nobody(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    service = await setup(h)
    renew, bulk = service.leases.renew, service.store.bulk
    told: list[str] = []
    lied = asyncio.Event()

    async def renew_telling_of_a_loss(run_id: str, owner: str) -> Renewal:
        renewal = await renew(run_id, owner)
        holding = run_id in service.active and bool(service.active[run_id].tables)
        if renewal.writing is not None and holding and not told:  # the first holder hears once: table gone
            told.append(run_id)
            lied.set()
            return Renewal(held=renewal.held, writing=None)
        return renewal

    async def first_write_waits_for_the_lie(collection: str, operations: Sequence[Any]) -> BulkOutcome:
        await until(lied, LEASE * 3)  # the holder's heartbeat comes while it holds the table
        return await bulk(collection, operations)

    monkeypatch.setattr(service.leases, "renew", renew_telling_of_a_loss)
    monkeypatch.setattr(service.store, "bulk", first_write_waits_for_the_lie)
    await run_all(h, service)
    assert len(told) == 1
    assert any("lost the table's writer lock" in line for line in h.events.logs(told[0]))
