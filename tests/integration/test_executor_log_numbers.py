"""Log numbers handed out in memory (issue #14): a line is sent only once the lease records its number,
so a take-over numbers after every line sent and a copy that lost its lease sends nothing it numbered
after. Real database; events collected."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from services.executor.ports import Claim
from services.executor.reporting import RunReporter
from services.executor.repository import MongoLeaseStore
from shared.contracts import RunRequested
from shared.contracts.runs import RunLog, RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Events,
    Harness,
    csv_text,
    import_spec,
)
from tests.support.waiting import eventually

FLUSH = 0.2


def a_request(harness: Harness, job_id: int) -> RunRequested:
    spec = import_spec("x.csv", {"kind": "custom", "table": "t"}, CONTACT_MAPPING)
    return harness.request(spec, job_id=job_id)


def reporter(
    request: RunRequested, leases: MongoLeaseStore, claim: Claim, owner: str, events: Events
) -> RunReporter:
    return RunReporter(
        request, executor_id=owner, attempt=claim.attempt, publisher=events, leases=leases,
        progress_interval=60, started_at=claim.started_at, log_seq=claim.log_seq, log_flush_seconds=FLUSH,
    )  # fmt: skip


def sent(events: Events) -> list[tuple[int, str]]:
    return [(m.data.seq, m.data.message) for m in events.messages if isinstance(m, RunLog)]


async def test_a_take_over_numbers_after_the_lines_sent_and_the_old_copy_sends_no_more(
    harness: Harness,
) -> None:
    leases = MongoLeaseStore(harness.mongo, harness.settings.database("executor"), lease_seconds=30)
    request = a_request(harness, 77)
    first_claim = await leases.claim_and_start(request, "exec-a")
    assert first_claim is not None and first_claim.attempt == 1 and first_claim.log_seq == 0
    events = Events()
    first = reporter(request, leases, first_claim, "exec-a", events)
    await first.log("one")
    await first.log("two")
    assert sent(events) == []  # not yet recorded: held
    await eventually(lambda: len(sent(events)) == 2, what="the two lines sent", timeout=10)
    assert sent(events) == [(1, "one"), (2, "two")]
    assert (await leases.leases.find_one({"_id": request.data.run_id}))["log_seq"] == 2

    await leases.leases.update_one({"_id": request.data.run_id}, {"$set": {"expires_at": datetime.now(UTC)}})
    second_claim = await leases.claim_and_start(request, "exec-b")  # the lease expired: taken over
    assert second_claim is not None and second_claim.attempt == 2 and second_claim.log_seq == 2
    assert second_claim.started_at == first_claim.started_at  # the first attempt's start is kept
    second = reporter(request, leases, second_claim, "exec-b", events)
    await first.log("three, from the copy that does not know yet it lost the run")
    await second.log("resumed")
    await eventually(
        lambda: first.lease_lost and len(sent(events)) == 3,
        what="the lease lost and 3 lines sent",
        timeout=10,
    )

    assert sent(events) == [(1, "one"), (2, "two"), (3, "resumed")]  # no number twice, no gap
    await first.log("four")
    await first.close_log(recorded=True)  # even told to send: the lost copy's lines stay dropped
    assert sent(events) == [(1, "one"), (2, "two"), (3, "resumed")]


async def test_the_stored_result_sends_every_held_line_without_a_write_of_its_own(harness: Harness) -> None:
    leases = MongoLeaseStore(harness.mongo, harness.settings.database("executor"), lease_seconds=30)
    request = a_request(harness, 78)
    claim = await leases.claim_and_start(request, "exec-a")
    assert claim is not None
    events = Events()
    run = reporter(request, leases, claim, "exec-a", events)
    run.log_flush_seconds = 60  # a short run: its lines wait for the result
    for n in range(3):
        await run.log(f"line {n + 1}")
    assert await leases.finish(request.data.run_id, "exec-a", "{}")
    await run.close_log(recorded=True)

    assert [seq for seq, _ in sent(events)] == [1, 2, 3]
    assert (await leases.leases.find_one({"_id": request.data.run_id}))["log_seq"] == 0  # never written


@pytest.mark.parametrize("settle", [0.0, 3 * FLUSH], ids=["stored-at-once", "flush-due-meanwhile"])
async def test_a_log_flush_due_while_the_result_is_stored_drops_no_line(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, settle: float
) -> None:
    """The last lines wait for the stored result. A flush falling due just after that write would find the
    lease no longer running: it must not take that for a loss and drop the run's last lines."""
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("c.csv", csv_text([["id", "email", "points"], ["C1", "c1@example.com", "1"]]))
    service = h.service(log_flush=FLUSH / 4)
    store = service.leases.finish

    async def store_then_linger(*args: Any) -> bool:
        stored = await store(*args)
        await asyncio.sleep(settle)  # a flush that was due falls in here
        return stored

    monkeypatch.setattr(service.leases, "finish", store_then_linger)
    finished = await h.run(import_spec("c.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING),
                           service=service)  # fmt: skip

    assert finished.data.status == RunStatus.SUCCEEDED
    lines = [m.data for m in h.events.of(finished.data.run_id, RunLog)]
    assert [line.seq for line in lines] == list(range(1, finished.data.last_log_seq + 1))
    assert lines[-1].message.startswith("finished: succeeded")
