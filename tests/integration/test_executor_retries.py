"""Transient failures are retried with backoff up to the limit, then the run fails with a clear message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from shared.contracts import RunFinished
from shared.contracts.runs import RunLog, RunStatus
from shared.mongo import free_port
from shared.secrets import Binding
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)


async def unreachable_connection(h: Harness) -> None:
    """An SFTP endpoint nobody listens on: what a server that went away looks like."""
    await h.mongo[h.settings.database("catalog")]["connections"].insert_one(
        {
            "_id": 1, "kind": "sftp", "name": "gone", "host": "127.0.0.1", "port": free_port(),
            "username": h.sshd.username, "private_key_encrypted": h.box.encrypt(h.sshd.private_key, Binding("connection", 1, "private_key_encrypted")),
            "host_key": h.sshd.host_key, "base_dir": str(h.root), "created_at": datetime.now(UTC), "created_by": "t",
        }
    )  # fmt: skip


async def test_an_unreachable_server_is_retried_then_the_run_fails(harness: Harness) -> None:
    h = harness
    await unreachable_connection(h)
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("c.csv", csv_text([["id", "email", "points"], ["C1", "c1@example.com", "1"]]))
    spec = import_spec("c.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING)

    finished: RunFinished = await h.run(spec, service=h.service(max_attempts=3))

    assert finished.data.status == RunStatus.FAILED
    assert finished.data.error is not None and "unreachable" in finished.data.error
    logs = h.events.logs(finished.data.run_id)
    assert [line.split(" failed")[0] for line in logs if "failed, retrying" in line] == [
        "attempt 1",
        "attempt 2",
    ]
    assert await h.audience["table_contacts"].count_documents({}) == 0


async def test_a_transient_failure_is_retried_and_the_run_then_succeeds(harness: Harness) -> None:
    h = harness
    await unreachable_connection(h)
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("c.csv", csv_text([["id", "email", "points"], ["C1", "c1@example.com", "1"]]))
    spec = import_spec("c.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING)
    service = h.service(max_attempts=5)
    request = h.request(spec)
    await service.accept(request)
    # The first attempt fails ...
    await h.until(
        lambda: any("attempt 1 failed, retrying" in line for line in h.events.logs(request.data.run_id)),
        timeout=30,
    )
    # ... and the server comes back while the run waits to retry.
    connections = h.mongo[h.settings.database("catalog")]["connections"]
    await connections.update_one({"_id": 1}, {"$set": {"port": h.sshd.port}})

    finished = await h.finished(request.data.run_id)

    assert finished.data.status == RunStatus.SUCCEEDED, finished.data.error
    assert finished.data.counts.inserted == 1


async def test_a_copy_that_lost_its_lease_publishes_no_result(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """Another executor took the run over (the lease changed hands): the copy that lost it stops and
    reports nothing, so the run ends with the new owner's one `RunFinished`. Nor does it send log lines
    it numbered after its last recorded number: those numbers are the new owner's now."""
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    rows = [[f"K{n:05}", f"c{n}@x.io", str(n)] for n in range(3000)]
    h.write("big.csv", csv_text([["id", "email", "points"], *rows]))
    losing = h.service(batch_size=5, in_flight=1, executor_id="losing", lease_seconds=0.9)
    request = h.request(import_spec("big.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING))
    run_id = request.data.run_id
    assert await losing.accept(request)
    await h.until(lambda: any(m.startswith("header read") for m in h.events.logs(run_id)), timeout=30)
    leases = h.mongo[h.settings.database("executor")]["run_leases"]
    await leases.update_one({"_id": run_id}, {"$set": {"owner": "executor-that-took-over"}})
    task = losing.active[run_id].task
    assert task is not None
    async with asyncio.timeout(30):
        await task
    assert h.events.of(run_id, RunFinished) == []
    assert "another executor took this run over; this copy stops" not in h.events.logs(run_id)
    assert "stopped on request" not in h.events.logs(run_id)
    assert "lease lost; stopping this copy of the run" in caplog.text  # said in the executor's own log
    lease_seq = (await leases.find_one({"_id": run_id}))["log_seq"]
    assert max(m.data.seq for m in h.events.of(run_id, RunLog)) <= lease_seq  # none the new owner may use
    lease = await leases.find_one({"_id": run_id})
    assert lease is not None and lease["owner"] == "executor-that-took-over" and "finished" not in lease
