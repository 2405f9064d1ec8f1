"""Custom-table imports over real sshd and the real database: merge, append, overwrite, guards, racing writers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.executor.audience import BulkOutcome, MongoAudienceStore
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.targets import CustomMergeTarget, Target
from shared.catalog_records import TableRecord
from shared.contracts.runs import RunCounts, RunStatus
from shared.mongo import MongoClient
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
    read_csv,
)

HEADER = ["id", "email", "points"]


async def contacts(h: Harness, name: str = "contacts") -> None:
    await h.connection()
    await h.table(name, CONTACT_FIELDS, primary_key=("customer_id",))


def spec(path: str, mode: str, **extra: object) -> dict[str, object]:
    return import_spec(path, {"kind": "custom", "table": "contacts", "mode": mode}, CONTACT_MAPPING, **extra)


async def test_merge_inserts_then_updates_and_the_last_duplicate_wins(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("a.csv", csv_text([HEADER, ["C1", "a@x.io", "1"], ["C2", "b@x.io", "2"]]))
    first = await h.run(spec("a.csv", "merge"))
    assert first.data.status == RunStatus.SUCCEEDED
    assert first.data.counts == RunCounts(read=2, inserted=2)

    # C2 appears three times in different batches (batch size 2): the last occurrence wins.
    rows = [HEADER, ["C2", "b1@x.io", "20"], ["C3", "c@x.io", "3"], ["C2", "b2@x.io", "21"],
            ["C4", "d@x.io", ""], ["C2", "b3@x.io", "22"]]  # fmt: skip
    h.write("b.csv", csv_text(rows))
    second = await h.run(spec("b.csv", "merge"), service=h.service(batch_size=2))
    assert second.data.status == RunStatus.SUCCEEDED
    assert second.data.counts == RunCounts(read=5, inserted=2, updated=3)  # every C2 line updates
    assert await h.rows("contacts", "customer_id") == [
        {"customer_id": "C1", "email": "a@x.io", "points": 1},
        {"customer_id": "C2", "email": "b3@x.io", "points": 22},
        {"customer_id": "C3", "email": "c@x.io", "points": 3},
        {"customer_id": "C4", "email": "d@x.io"},
    ]
    assert any("2 duplicate key(s)" in line for line in h.events.logs(second.data.run_id))


async def test_append_is_idempotent_per_run_and_rejects_existing_keys(harness: Harness) -> None:
    h = harness
    await contacts(h)
    h.write("a.csv", csv_text([HEADER, ["C1", "a@x.io", "1"], ["C2", "b@x.io", "2"]]))
    await h.run(spec("a.csv", "append"), job_id=500)
    h.write("b.csv", csv_text([HEADER, ["C3", "c@x.io", "3"], ["C1", "z@x.io", "9"], ["C4", "d@x.io", "4"]]))
    run = await h.run(spec("b.csv", "append"), job_id=501)
    assert run.data.status == RunStatus.PARTIAL
    assert run.data.counts == RunCounts(read=3, inserted=2, rejected=1)
    assert read_csv(h.root / "b.csv.501.1.rejects.csv") == [
        ["line", "field", "reason"],
        ["3", "customer_id", "a row with primary key customer_id='C1' already exists"],
    ]
    # The same run again (as after a crash before it finished): nothing is added twice.
    again = h.request(spec("b.csv", "append"), job_id=501)
    await h.mongo[h.settings.database("executor")]["run_leases"].delete_one({"_id": "501.1"})
    h.events.messages.clear()
    await h.service().accept(again)
    rerun = await h.finished("501.1")
    assert rerun.data.counts == RunCounts(read=3, inserted=2, rejected=1)
    assert [r["customer_id"] for r in await h.rows("contacts", "customer_id")] == ["C1", "C2", "C3", "C4"]
    assert (await h.audience["table_contacts"].find_one({"customer_id": "C3"}))["_id"] == "501.1:0:2"


async def test_overwrite_swaps_atomically_and_readers_see_the_old_table_until_then(harness: Harness) -> None:
    h = harness
    await contacts(h)
    await h.audience["table_contacts"].insert_many(
        [{"customer_id": f"OLD{i}", "email": "o@x.io"} for i in range(5)]
    )
    rows = [HEADER] + [[f"N{i:03d}", f"n{i}@x.io", str(i)] for i in range(60)]
    h.write("new.csv", csv_text(rows))
    seen: list[set[str]] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            ids = {
                d["customer_id"][0] async for d in h.audience["table_contacts"].find({}, {"customer_id": 1})
            }
            count = await h.audience["table_contacts"].count_documents({})
            seen.append(ids)
            assert count in (5, 60), count  # never half-loaded
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(reader())
    run = await h.run(spec("new.csv", "overwrite"), service=h.service(batch_size=5, in_flight=1))
    done.set()
    await watcher
    assert run.data.status == RunStatus.SUCCEEDED
    assert run.data.counts == RunCounts(read=60, inserted=60)
    assert {"O"} in seen  # a reader saw the old table while the new one loaded
    assert [r["customer_id"] for r in await h.rows("contacts", "customer_id")] == [
        f"N{i:03d}" for i in range(60)
    ]
    assert not [n for n in await h.audience.list_collection_names() if "__loading_" in n]
    logs = h.events.logs(run.data.run_id)
    assert any("swapped in: 60 rows (were 5)" in line for line in logs)


async def test_failed_overwrite_leaves_the_old_table_and_no_partial_collection(harness: Harness) -> None:
    h = harness
    await contacts(h)
    old = [{"customer_id": f"OLD{i}", "email": "o@x.io"} for i in range(10)]
    await h.audience["table_contacts"].insert_many([dict(o) for o in old])
    h.write("small.csv", csv_text([HEADER, ["N1", "n@x.io", "1"], ["N2", "bad", "2"]]))
    guarded = spec("small.csv", "overwrite", guards={"max_shrink_percent": 50})
    run = await h.run(guarded)
    assert run.data.status == RunStatus.FAILED
    assert run.data.error == (
        "the overwrite would shrink contacts by 90.0 % (10 → 1 rows), more than the limit of 50 %"
    )
    assert run.data.counts == RunCounts(read=2, rejected=1)  # nothing was swapped in: nothing written
    assert await h.rows("contacts", "customer_id") == old
    assert not [n for n in await h.audience.list_collection_names() if "__loading_" in n]
    assert any("guard max_shrink_percent failed" in line for line in h.events.logs(run.data.run_id))


async def test_reject_guard_fails_before_anything_is_written(harness: Harness) -> None:
    h = harness
    await contacts(h)
    rows = [HEADER, ["C1", "a@x.io", "1"], ["C2", "bad", "2"], ["C3", "c@x.io", "x"], ["C4", "d@x.io", "4"]]
    h.write("a.csv", csv_text(rows))
    run = await h.run(spec("a.csv", "merge", guards={"max_reject_percent": 25}))
    assert run.data.status == RunStatus.FAILED
    assert run.data.error == "50.0 % of the records are rejected, more than the limit of 25 %"
    assert run.data.counts == RunCounts(read=4, rejected=2)  # as found; nothing written
    assert await h.rows("contacts", "customer_id") == []
    ok = await h.run(spec("a.csv", "merge", guards={"max_reject_percent": 50}))
    assert ok.data.status == RunStatus.PARTIAL
    assert ok.data.counts == RunCounts(
        read=4, inserted=2, rejected=2
    )  # the validation pass counted nothing twice
    assert any("guard max_reject_percent passed: 2 of 4" in line for line in h.events.logs(ok.data.run_id))


# --- concurrent writers of one table (at the target level: no per-table lock serialises them) -------


class LockstepStore(MongoAudienceStore):
    """The real store, but each armed write's first bulk waits until the other writer has looked up its
    keys too: both saw the same keys missing, so both insert them and one loses the race."""

    def __init__(self, client: MongoClient, db: str, barrier: asyncio.Barrier) -> None:
        super().__init__(client, db)
        self.barrier = barrier
        self.armed = False

    async def bulk(self, collection: str, operations: Sequence[Any]) -> BulkOutcome:
        if self.armed:
            self.armed = False
            await self.barrier.wait()
        return await super().bulk(collection, operations)


def writer_pair(h: Harness) -> tuple[LockstepStore, LockstepStore]:
    barrier = asyncio.Barrier(2)
    db = h.settings.audience_database
    return LockstepStore(h.mongo, db, barrier), LockstepStore(h.mongo, db, barrier)


async def race(pairs: list[tuple[LockstepStore, Target, list[Item]]], batch_size: int) -> list[WriteOutcome]:
    """Both targets write their items batch by batch, each batch's lookups done before either writes."""
    outcomes = [WriteOutcome() for _ in pairs]
    for start in range(0, max(len(items) for _, _, items in pairs), batch_size):
        for store, _, _ in pairs:
            store.armed = True
        results = await asyncio.gather(*(t.write(items[start : start + batch_size]) for _, t, items in pairs))
        for total, result in zip(outcomes, results, strict=True):
            total.add(result)
    return outcomes


def items(keys: Sequence[int], value: str) -> list[Item]:
    return [
        Item(0, line, {"customer_id": f"C{k:03d}", "email": f"{value}{k}@x.io"})
        for line, k in enumerate(keys, 2)
    ]


async def test_two_merges_racing_on_one_table_both_succeed_with_exact_counts(harness: Harness) -> None:
    h = harness
    table = TableRecord.model_validate({"name": "contacts", "primary_key": ["customer_id"], "fields": CONTACT_FIELDS,
                                        "created_at": datetime.now(UTC), "created_by": "test"})  # fmt: skip
    a_store, b_store = writer_pair(h)
    await a_store.ensure_table(table)
    a, b = CustomMergeTarget(a_store, table, "1.1#1.1"), CustomMergeTarget(b_store, table, "2.1#1.1")
    # In every round both batches hold three keys the other holds too and two of their own.
    b_keys = [k for i in range(0, 30, 5) for k in (i, i + 1, i + 2, 100 + i, 101 + i)]
    a_items, b_items = items(range(30), "a"), items(b_keys, "b")
    first, second = await race([(a_store, a, a_items), (b_store, b, b_items)], batch_size=5)
    for outcome, written in ((first, a_items), (second, b_items)):
        assert outcome.inserted + outcome.updated == len(written) and not outcome.rejections
    # 42 distinct keys, each inserted once; each of the 18 shared ones lost a race in one writer, which
    # updated it instead.
    assert first.inserted + second.inserted == 42 and first.updated + second.updated == 18
    rows = await h.rows("contacts", "customer_id")
    assert len(rows) == 42
    ids = [d["_id"] async for d in h.audience["table_contacts"].find({}, {"_id": 1})]
    assert {i.partition(":")[0] for i in ids} == {"1.1", "2.1"}  # each insert's own id, never another's


async def test_merge_ends_with_the_last_occurrence_whatever_the_batches(harness: Harness) -> None:
    h = harness
    await contacts(h)
    rows = [HEADER, ["C1", "a@x.io", "5"], ["C0", "z@x.io", ""], ["C1", "b@x.io", ""]]
    h.write("a.csv", csv_text(rows))
    for batch_size in (1000, 1):  # C1's occurrences in one batch, then in two
        await h.audience["table_contacts"].delete_many({})
        await h.audience["table_contacts"].insert_one({"customer_id": "C0", "email": "old@x.io", "points": 9})
        run = await h.run(spec("a.csv", "merge"), service=h.service(batch_size=batch_size))
        assert run.data.counts == RunCounts(read=3, inserted=1, updated=2), batch_size
        # A mapped field the row leaves empty is cleared, as the row says (an unmapped field would stay).
        assert await h.rows("contacts", "customer_id") == [
            {"customer_id": "C0", "email": "z@x.io"},
            {"customer_id": "C1", "email": "b@x.io"},
        ], batch_size


async def test_a_taken_over_merge_counts_as_the_uninterrupted_run(harness: Harness) -> None:
    h = harness
    table = TableRecord.model_validate({"name": "contacts", "primary_key": ["customer_id"], "fields": CONTACT_FIELDS,
                                        "created_at": datetime.now(UTC), "created_by": "test"})  # fmt: skip
    store = MongoAudienceStore(h.mongo, h.settings.audience_database)
    await store.ensure_table(table)
    await h.audience["table_contacts"].insert_one({"customer_id": "C100", "email": "old@x.io"})
    first = items([1, 2, 3], "a")  # lines 2-4: checkpointed before the crash
    # Lines 5-7: a new key, a key that existed before the run, a key of lines 2-4.
    second = [
        Item(0, line, {"customer_id": f"C{k:03d}", "email": f"b{k}@x.io"})
        for line, k in ((5, 4), (6, 100), (7, 1))
    ]
    checkpoint = (0, 4)
    dead = CustomMergeTarget(store, table, "9.1#1.1")
    counted = await dead.write(first)
    await dead.write(second)  # written, then the executor died before the next checkpoint
    again = CustomMergeTarget(store, table, "9.1#2.1", redo_after=lambda: checkpoint)
    counted.add(await again.write(second))
    assert (counted.inserted, counted.updated, counted.unchanged) == (4, 2, 0)  # as without the crash
    assert len(await h.rows("contacts", "customer_id")) == 5
