"""Runs writing one table at once, on different executors: the end state and the counts are those of some
serial order of the runs, nobody fails, a waiting run obeys stop, a dead holder blocks nobody for long.

The runs are started together while a third holder keeps the table, so all of them are under way when the
table comes free; batches are small, so without the writer lock their writes would interleave.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from services.executor.audience import BulkOutcome
from services.executor.service import ExecutorService
from shared.contracts import RunFinished
from shared.contracts.runs import RunLog, RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    expire_table_hold,
    free_table,
    hold_table,
    import_spec,
    table_holds,
)

BLOCKER, ELSEWHERE = "999.1", "executor-elsewhere"
SIZE = 200  # rows per file: 40 batches of 5
Counts = tuple[int, int, int]  # inserted, updated, rejected


@dataclass(frozen=True)
class Load:
    """One run as the model sees it: rows by key, and what the mode does with them."""

    mode: str  # merge | append | overwrite
    rows: dict[str, dict[str, Any]]
    insert_on_no_match: bool = True

    def apply(self, state: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], Counts]:
        if self.mode == "overwrite":
            return dict(self.rows), (len(self.rows), 0, 0)
        after, inserted, updated, rejected = dict(state), 0, 0, 0
        for key, row in self.rows.items():
            if key not in after:
                if self.insert_on_no_match:
                    after[key], inserted = row, inserted + 1
                else:
                    rejected += 1
            elif self.mode == "append":
                rejected += 1
            elif {**after[key], **row} != after[key]:  # a row that changes nothing is unchanged (#14)
                after[key], updated = {**after[key], **row}, updated + 1
        return after, (inserted, updated, rejected)


def serial_outcomes(
    initial: dict[str, dict[str, Any]], loads: list[Load]
) -> list[tuple[dict[str, dict[str, Any]], list[Counts]]]:
    """End state and per-run counts of every serial order (counts listed in the runs' own order)."""
    outcomes = []
    for order in itertools.permutations(range(len(loads))):
        state, counts = initial, [(0, 0, 0)] * len(loads)
        for index in order:
            state, counts[index] = loads[index].apply(state)
        outcomes.append((state, counts))
    return outcomes


def counts_of(finished: RunFinished) -> Counts:
    c = finished.data.counts
    return c.inserted, c.updated, c.rejected


def contacts(keys: range | list[int], tag: str) -> dict[str, dict[str, Any]]:
    return {f"K{k:03}": {"customer_id": f"K{k:03}", "email": f"{tag}{k}@x.io", "points": k} for k in keys}


def contacts_file(rows: dict[str, dict[str, Any]]) -> str:
    lines = [[r["customer_id"], r["email"], str(r["points"])] for r in rows.values()]
    return csv_text([["id", "email", "points"], *lines])


def waiting(h: Harness, run_id: str) -> bool:
    return any(line.startswith("waiting for run") for line in h.events.logs(run_id))


async def race(h: Harness, collection: str, specs: list[dict[str, Any]]) -> list[RunFinished]:
    """Start the runs on executors of their own while another holder keeps the table, then free it."""
    await hold_table(h, collection, BLOCKER, ELSEWHERE)
    services = [h.service(batch_size=5, in_flight=1, executor_id=f"executor-{n}") for n in range(len(specs))]
    requests = [h.request(spec) for spec in specs]
    for service, request in zip(services, requests, strict=True):
        assert await service.accept(request)
    run_ids = [r.data.run_id for r in requests]
    await h.until(lambda: all(waiting(h, run_id) for run_id in run_ids))
    await free_table(h, collection, BLOCKER)
    finished = [await h.finished(run_id) for run_id in run_ids]
    for done in finished:
        assert done.data.status in (RunStatus.SUCCEEDED, RunStatus.PARTIAL), done.data.error
        logs = h.events.logs(done.data.run_id)
        assert sum(line.startswith("waiting for run") for line in logs) == 1  # once, whoever it waited for
        assert sum(line.endswith("; proceeding") for line in logs) == 1
    assert await holds(h) == []  # every run released the table
    return finished


async def holds(h: Harness) -> list[dict[str, Any]]:
    return await table_holds(h)


def assert_serial(
    actual: dict[str, dict[str, Any]],
    finished: list[RunFinished],
    initial: dict[str, dict[str, Any]],
    loads: list[Load],
) -> None:
    found = (actual, [counts_of(f) for f in finished])
    assert found in serial_outcomes(initial, loads), (
        "neither the end state nor the counts of any serial order"
    )


# --- custom tables ----------------------------------------------------------------------------------


def custom_spec(path: str, mode: str) -> dict[str, Any]:
    return import_spec(path, {"kind": "custom", "table": "contacts", "mode": mode}, CONTACT_MAPPING)


async def custom_rows(h: Harness) -> dict[str, dict[str, Any]]:
    return {r["customer_id"]: r for r in await h.rows("contacts", "customer_id")}


@pytest.mark.parametrize(
    "modes",
    [
        ("merge", "merge"),
        ("merge", "append"),
        ("append", "append"),
        ("merge", "overwrite"),
        ("append", "overwrite"),
        ("overwrite", "overwrite"),
        ("merge", "append", "merge"),
    ],
    ids="+".join,
)
async def test_custom_table_writers_end_in_a_serial_order(harness: Harness, modes: tuple[str, ...]) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    initial = contacts(range(0, 3 * SIZE, 7), "old")  # some keys of every file exist before the runs
    h.write("initial.csv", contacts_file(initial))
    assert (await h.run(custom_spec("initial.csv", "merge"))).data.status == RunStatus.SUCCEEDED
    loads = []
    for n, mode in enumerate(modes):  # each run's keys overlap half of the previous run's, in opposite order
        rows = contacts(crossing(n, SIZE // 2 * n, SIZE // 2 * n + SIZE), f"run{n}-")
        h.write(f"run{n}.csv", contacts_file(rows))
        loads.append(Load(mode, rows))
    finished = await race(h, "table_contacts", [custom_spec(f"run{n}.csv", m) for n, m in enumerate(modes)])
    assert_serial(await custom_rows(h), finished, initial, loads)


# --- lists and profile extensions -------------------------------------------------------------------


def crossing(n: int, start: int, stop: int) -> list[int]:
    """Keys in ascending order for even runs, descending for odd ones: interleaved writes of two runs
    would leave some shared keys with one run's values and others with the other's."""
    keys = list(range(start, stop))
    return keys[::-1] if n % 2 else keys


def people(keys: range | list[int], city: str) -> dict[str, dict[str, Any]]:
    return {f"p{k}@x.io": {"EMAIL_ADDRESS_": f"p{k}@x.io", "CITY": f"{city}{k}"} for k in keys}


def people_file(rows: dict[str, dict[str, Any]]) -> str:
    return csv_text([["mail", "city"], *([r["EMAIL_ADDRESS_"], r["CITY"]] for r in rows.values())])


def list_spec(path: str, *, insert: bool = True) -> dict[str, Any]:
    target = {
        "kind": "list",
        "table": "people",
        "match_columns": ["EMAIL_ADDRESS_"],
        "insert_on_no_match": insert,
    }
    return import_spec(path, target, [("mail", "EMAIL_ADDRESS_"), ("city", "CITY")])


async def list_rows(h: Harness) -> dict[str, dict[str, Any]]:
    rows = await h.rows("people", "RIID_")
    riids = [r.pop("RIID_") for r in rows]
    assert len(set(riids)) == len(riids), "RIID_ values must stay unique"
    return {r["EMAIL_ADDRESS_"]: r for r in rows}


async def people_list(h: Harness, keys: range) -> dict[str, dict[str, Any]]:
    await h.connection()
    await h.table("people", [{"name": "CITY", "type": "string"}], kind="list")
    initial = people(keys, "Old")
    h.write("initial.csv", people_file(initial))
    assert (await h.run(list_spec("initial.csv"))).data.status == RunStatus.SUCCEEDED
    return initial


@pytest.mark.parametrize("second_inserts", [True, False], ids=["insert", "no-insert"])
async def test_list_merges_end_in_a_serial_order(harness: Harness, second_inserts: bool) -> None:
    h = harness
    initial = await people_list(h, range(0, 3 * SIZE, 7))
    first, second = people(crossing(0, 0, SIZE), "A"), people(crossing(1, SIZE // 2, SIZE * 3 // 2), "B")
    h.write("a.csv", people_file(first))
    h.write("b.csv", people_file(second))
    loads = [Load("merge", first), Load("merge", second, insert_on_no_match=second_inserts)]
    finished = await race(h, "table_people", [list_spec("a.csv"), list_spec("b.csv", insert=second_inserts)])
    assert_serial(await list_rows(h), finished, initial, loads)


async def test_profile_extension_merges_end_in_a_serial_order(harness: Harness) -> None:
    h = harness
    await people_list(h, range(SIZE * 3 // 2))
    await h.table(
        "pets", [{"name": "SCORE", "type": "integer"}], kind="profile_extension", parent_list="people"
    )
    emails = {r["RIID_"]: r["EMAIL_ADDRESS_"] for r in await h.rows("people", "RIID_")}
    loads = []
    for n, keys in enumerate([crossing(0, 0, SIZE), crossing(1, SIZE // 2, SIZE * 3 // 2)]):
        rows = {f"p{k}@x.io": {"SCORE": 100 * n + k} for k in keys}
        h.write(
            f"pets{n}.csv", csv_text([["mail", "score"], *([e, str(r["SCORE"])] for e, r in rows.items())])
        )
        loads.append(Load("merge", rows))
    target = {"kind": "profile_extension", "table": "pets", "match_column": "EMAIL_ADDRESS_"}
    mapping = [("mail", "EMAIL_ADDRESS_"), ("score", "SCORE")]
    finished = await race(h, "table_pets", [import_spec(f"pets{n}.csv", target, mapping) for n in range(2)])
    actual = {emails[r["RIID_"]]: {"SCORE": r["SCORE"]} for r in await h.rows("pets", "RIID_")}
    assert_serial(actual, finished, {}, loads)


# --- waiting, stopping, a dead holder ---------------------------------------------------------------


async def test_a_waiting_run_says_whom_it_waits_for_and_stops_without_writing(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("a.csv", contacts_file(contacts(range(10), "a")))
    await hold_table(h, "table_contacts", BLOCKER, ELSEWHERE)
    service, request = h.service(), h.request(custom_spec("a.csv", "merge"))
    run_id = request.data.run_id
    await service.accept(request)
    await h.until(lambda: waiting(h, run_id))
    assert f"waiting for run {BLOCKER}, which is writing table contacts" in h.events.logs(run_id)
    assert service.request_stop(run_id)
    stopped = await h.finished(run_id)
    assert stopped.data.status == RunStatus.STOPPED
    assert counts_of(stopped) == (0, 0, 0)
    assert await h.rows("contacts", "customer_id") == []
    # The stopped run never held the table: the holder keeps it.
    assert [(d["run_id"], d["owner"]) for d in await holds(h)] == [(BLOCKER, ELSEWHERE)]


async def test_a_dead_holder_blocks_others_one_lease_at_most_and_its_take_over_completes(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    lease = 2.0
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    big, small = contacts(range(3000), "dead"), contacts(range(0, 100, 2), "live")
    h.write("big.csv", contacts_file(big))
    h.write("small.csv", contacts_file(small))
    doomed = h.service(batch_size=5, in_flight=1, executor_id="doomed", lease_seconds=lease)
    survivor = h.service(batch_size=10, executor_id="survivor", lease_seconds=lease)
    checkpointed = spy_on_checkpoints(doomed, monkeypatch)
    pace_writes(doomed, monkeypatch)
    dying, other = h.request(custom_spec("big.csv", "merge")), h.request(custom_spec("small.csv", "merge"))
    await doomed.accept(dying)
    await h.until(lambda: any(p.data.records_written for p in h.progress(dying.data.run_id)))
    await survivor.accept(other)  # the doomed run is writing: it holds the table
    await asyncio.wait_for(checkpointed.wait(), timeout=30)
    await h.until(lambda: waiting(h, other.data.run_id))
    abandon(doomed, monkeypatch)  # the executor dies: no renewal, no release, no hand-over
    died_at = datetime.now(UTC)

    done = await h.finished(other.data.run_id)
    assert done.data.status == RunStatus.SUCCEEDED
    proceeded = next(m.data for m in h.events.of(other.data.run_id, RunLog) if "proceeding" in m.data.message)
    assert (proceeded.at - died_at).total_seconds() < lease + 1  # one lease at most, plus a retry's pause
    assert await survivor.take_over_expired() == 1
    taken_over = await h.finished(dying.data.run_id)
    assert taken_over.data.status == RunStatus.SUCCEEDED
    assert any("loading from the start" in line for line in h.events.logs(dying.data.run_id))
    # The take-over loaded the whole file after the other run: the state of the order other → dying.
    assert await custom_rows(h) == big
    inserted, updated, rejected = counts_of(taken_over)
    assert (inserted + updated, rejected) == (len(big), 0)
    assert await holds(h) == []


async def test_a_handed_over_run_keeps_its_table_and_resumes_after_its_checkpoint(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    big = contacts(range(3000), "big")
    h.write("big.csv", contacts_file(big))
    stopping = h.service(batch_size=5, in_flight=1, executor_id="stopping")
    successor = h.service(batch_size=10, executor_id="successor")
    checkpointed = spy_on_checkpoints(stopping, monkeypatch)
    pace_writes(stopping, monkeypatch)
    request = h.request(custom_spec("big.csv", "merge"))
    await stopping.accept(request)
    await asyncio.wait_for(checkpointed.wait(), timeout=30)
    await stopping.shutdown(grace=0)  # SIGTERM past the grace period: lease and table handed over at once
    assert await successor.take_over_expired() == 1
    done = await h.finished(request.data.run_id)
    assert done.data.status == RunStatus.SUCCEEDED
    logs = h.events.logs(request.data.run_id)
    assert any(line.startswith("resuming after line") for line in logs)
    assert not any("loading from the start" in line or "waiting for run" in line for line in logs)
    assert await custom_rows(h) == big
    assert counts_of(done) == (len(big), 0, 0)


async def test_a_holder_that_stalled_past_its_hold_loads_again_after_the_run_that_took_the_table(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    big, small = contacts(range(3000), "slow"), contacts(range(0, 100, 2), "quick")
    h.write("big.csv", contacts_file(big))
    h.write("small.csv", contacts_file(small))
    stalling = h.service(batch_size=5, in_flight=1, executor_id="stalling", lease_seconds=0.9)
    quick = h.service(executor_id="quick")
    slow, other = h.request(custom_spec("big.csv", "merge")), h.request(custom_spec("small.csv", "merge"))
    await stalling.accept(slow)
    await h.until(lambda: any(line.startswith("header read") for line in h.events.logs(slow.data.run_id)))
    await quick.accept(other)  # the slow run is loading: it holds the table
    await h.until(lambda: waiting(h, other.data.run_id))
    # An executor that stalls for longer than a hold: its heartbeat renews nothing until the other run has
    # taken the table (a one-shot expiry alone could be renewed before the other run polls), then resumes.
    stalled = stall_renewals(stalling, monkeypatch)
    await expire_table_hold(h, "table_contacts")
    await h.until(lambda: any(" is free after " in line for line in h.events.logs(other.data.run_id)))
    stalled.set()
    assert (await h.finished(other.data.run_id)).data.status == RunStatus.SUCCEEDED
    done = await h.finished(slow.data.run_id)
    assert done.data.status == RunStatus.SUCCEEDED, done.data.error
    # The stalled run gave the table up and loaded its whole file after the other run: order other → slow.
    assert await custom_rows(h) == big
    assert any("lost the table's writer lock" in line for line in h.events.logs(slow.data.run_id))
    assert await holds(h) == []


async def test_a_failed_run_releases_the_table(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    h.write("all.csv", contacts_file(contacts(range(10), "a")))
    h.write("one.csv", contacts_file(contacts(range(1), "b")))
    assert (await h.run(custom_spec("all.csv", "merge"))).data.status == RunStatus.SUCCEEDED
    guarded = {**custom_spec("one.csv", "overwrite"), "guards": {"max_shrink_percent": 50}}
    refused = await h.run(guarded)  # fails at the swap, while it holds the table
    assert refused.data.status == RunStatus.FAILED
    assert "shrink" in (refused.data.error or "")
    assert await holds(h) == []
    after = await h.run(custom_spec("one.csv", "merge"))
    assert after.data.status == RunStatus.SUCCEEDED
    assert not waiting(h, after.data.run_id)


def stall_renewals(service: ExecutorService, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The service's lease renewals wait until the returned event is set (its executor "stalls")."""
    resumed = asyncio.Event()
    renew = service.leases.renew

    async def stalled(run_id: str, owner: str) -> Any:
        await resumed.wait()
        return await renew(run_id, owner)

    monkeypatch.setattr(service.leases, "renew", stalled)
    return resumed


def pace_writes(service: ExecutorService, monkeypatch: pytest.MonkeyPatch, seconds: float = 0.005) -> None:
    """Each of the service's writes takes at least `seconds` more: its load lasts past a checkpoint
    interval (1 s) however fast the database is, so a checkpoint is saved before the load ends."""
    bulk = service.store.bulk

    async def paced(collection: str, operations: Sequence[Any]) -> BulkOutcome:
        await asyncio.sleep(seconds)
        return await bulk(collection, operations)

    monkeypatch.setattr(service.store, "bulk", paced)


def spy_on_checkpoints(service: ExecutorService, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    saved = asyncio.Event()
    save = service.leases.save_checkpoint

    async def spy(run_id: str, owner: str, checkpoint: dict[str, Any]) -> None:
        await save(run_id, owner, checkpoint)
        saved.set()

    monkeypatch.setattr(service.leases, "save_checkpoint", spy)
    return saved


def abandon(service: ExecutorService, monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing(*args: Any) -> None:
        return None

    monkeypatch.setattr(service, "_hand_over", nothing)
    for active in list(service.active.values()):
        assert active.task is not None
        active.task.cancel()
