"""Custom-table imports over real sshd and the real database: merge, append, overwrite, guards."""

from __future__ import annotations

import asyncio

from shared.contracts.runs import RunStatus
from tests.integration.test_executor_harness import (  # noqa: F401
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    harness_fixture,
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
    assert first.data.counts.model_dump() == {"read": 2, "inserted": 2, "updated": 0, "rejected": 0}

    # C2 appears three times in different batches (batch size 2): the last occurrence wins.
    rows = [HEADER, ["C2", "b1@x.io", "20"], ["C3", "c@x.io", "3"], ["C2", "b2@x.io", "21"],
            ["C4", "d@x.io", ""], ["C2", "b3@x.io", "22"]]  # fmt: skip
    h.write("b.csv", csv_text(rows))
    second = await h.run(spec("b.csv", "merge"), service=h.service(batch_size=2))
    assert second.data.status == RunStatus.SUCCEEDED
    assert second.data.counts.model_dump() == {"read": 5, "inserted": 2, "updated": 1, "rejected": 0}
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
    assert run.data.counts.model_dump() == {"read": 3, "inserted": 2, "updated": 0, "rejected": 1}
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
    assert rerun.data.counts.model_dump() == {"read": 3, "inserted": 2, "updated": 0, "rejected": 1}
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
    assert run.data.counts.model_dump() == {"read": 60, "inserted": 60, "updated": 0, "rejected": 0}
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
    assert await h.rows("contacts", "customer_id") == []
    ok = await h.run(spec("a.csv", "merge", guards={"max_reject_percent": 50}))
    assert ok.data.status == RunStatus.PARTIAL
    assert any("guard max_reject_percent passed: 2 of 4" in line for line in h.events.logs(ok.data.run_id))
