"""A job's `max_duration`: past it the run stops at its next safe point and ends failed, "timed out after …",
not retried; an overwrite that timed out leaves the old table (its staging collection is dropped).

Real sshd files and the real database; the big load's writes are paced so that it lasts well past the limit
however fast the machine is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.executor.audience import BulkOutcome
from services.executor.service import ExecutorService
from shared.contracts.runs import RunStarted, RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
    run_leases,
)


def contacts_file(keys: range, tag: str) -> str:
    return csv_text([["id", "email", "points"], *([f"K{k:04}", f"{tag}{k}@x.io", str(k)] for k in keys)])


def pace_writes(service: ExecutorService, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    bulk = service.store.bulk

    async def paced(collection: str, operations: Sequence[Any]) -> BulkOutcome:
        await asyncio.sleep(seconds)
        return await bulk(collection, operations)

    monkeypatch.setattr(service.store, "bulk", paced)


async def test_an_overwrite_past_its_max_duration_fails_timed_out_and_leaves_the_old_table(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    target = {"kind": "custom", "table": "contacts", "mode": "overwrite"}
    h.write("old.csv", contacts_file(range(5), "old"))
    first = await h.run(import_spec("old.csv", target, CONTACT_MAPPING))
    assert first.data.status == RunStatus.SUCCEEDED and not first.data.timed_out
    old_rows = await h.rows("contacts", "customer_id")
    assert len(old_rows) == 5
    collections_before = sorted(await h.audience.list_collection_names())

    h.write("big.csv", contacts_file(range(3000), "new"))  # 600 batches of 5, each at least 10 ms: >= 6 s
    service = h.service(batch_size=5, in_flight=1, max_attempts=3)
    pace_writes(service, monkeypatch, 0.01)
    spec = import_spec("big.csv", target, CONTACT_MAPPING, max_duration="PT2S")
    began = time.monotonic()
    finished = await h.run(spec, service=service, job_id=first.data.job_id, run=2)
    took = time.monotonic() - began

    assert finished.data.status == RunStatus.FAILED
    assert finished.data.error == "timed out after PT2S"
    assert finished.data.timed_out is True
    assert 2.0 <= took < 5.0, took  # stopped at a safe point soon after the limit, not at the file's end
    assert 0 < finished.data.counts.read < 3000
    run_id = finished.data.run_id
    assert "failed: timed out after PT2S" in h.events.logs(run_id)
    assert not any("retrying" in line for line in h.events.logs(run_id))  # a timed-out run is not retried
    assert len(h.events.of(run_id, RunStarted)) == 1
    assert await h.rows("contacts", "customer_id") == old_rows  # the old table, untouched
    assert sorted(await h.audience.list_collection_names()) == collections_before  # staging dropped


async def test_a_run_within_its_max_duration_is_not_affected(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("c.csv", contacts_file(range(20), "c"))
    spec = import_spec("c.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING, max_duration="PT1H")
    finished = await h.run(spec)
    assert finished.data.status == RunStatus.SUCCEEDED
    assert finished.data.timed_out is False and finished.data.error is None
    assert finished.data.counts.inserted == 20


async def test_a_take_over_keeps_the_first_start_so_a_run_already_past_its_limit_times_out_at_once(
    harness: Harness,
) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("c.csv", contacts_file(range(20), "c"))
    spec = import_spec(
        "c.csv", {"kind": "custom", "table": "contacts"}, CONTACT_MAPPING, max_duration="PT30S"
    )
    request = h.request(spec)
    now = datetime.now(UTC)
    # What a dead executor leaves: its lease expired, the run first started a minute ago.
    await run_leases(h).insert_one(
        {"_id": request.data.run_id, "request": request.model_dump_json(), "log_seq": 0, "status": "running",
         "phase": "attempting", "owner": "dead", "expires_at": now - timedelta(seconds=5), "claimed_at": now,
         "attempt": 1, "started_at": now - timedelta(seconds=60)}
    )  # fmt: skip
    assert await h.service().take_over_expired() == 1
    finished = await h.finished(request.data.run_id)
    assert finished.data.status == RunStatus.FAILED
    assert finished.data.error == "timed out after PT30S" and finished.data.timed_out
    assert abs((finished.data.started_at - (now - timedelta(seconds=60))).total_seconds()) < 1
    assert await h.rows("contacts", "customer_id") == []
