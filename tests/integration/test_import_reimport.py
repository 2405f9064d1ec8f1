"""Re-imports (issue #14): a row whose record already holds its values is counted `unchanged` and not
written at all; only inserted and changed rows are; a take-over still counts as the uninterrupted run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.executor.audience import MongoAudienceStore
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.targets import CustomMergeTarget
from shared.catalog_records import TableRecord
from shared.contracts.runs import RunCounts
from tests.integration.test_import_lists import HEADER as LIST_HEADER
from tests.integration.test_import_lists import USER_FIELDS, list_spec
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    csv_text,
    import_spec,
)

STAMPS = {"_id": 0, "_cx_run": 1, "_cx_at": 1}


async def stamps(h: Harness, table: str, key: str) -> dict[Any, tuple[Any, Any]]:
    """Each record's last write: (run mark, time)."""
    docs = h.audience[f"table_{table}"].find({}, {**STAMPS, key: 1})
    return {doc[key]: (doc["_cx_run"], doc["_cx_at"]) async for doc in docs}


async def test_a_list_reimport_writes_only_the_rows_that_changed(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    rows = [[f"u{n}@x.io", f"C{n}", f"Name{n}", "Bern"] for n in range(20)]
    h.write("p1.csv", csv_text([LIST_HEADER, *rows]))
    assert (await h.run(list_spec("p1.csv"), job_id=1)).data.counts == RunCounts(read=20, inserted=20)
    before = await stamps(h, "people", "EMAIL_ADDRESS_")
    rows[3][3] = "Zug"  # changed
    rows[7][3] = ""  # a mapped field cleared
    rows.append(["U5@X.io", "C5", "Name5", "Bern"])  # a repeat that leaves u5 as it is
    rows.append(["u9@x.io", "C9", "Name9", "Chur"])  # u9: the same first, then changed (a repeat)
    h.write("p2.csv", csv_text([LIST_HEADER, *rows]))
    again = await h.run(list_spec("p2.csv"), job_id=1, run=2)
    assert again.data.counts == RunCounts(read=22, updated=3, unchanged=19)
    after = await stamps(h, "people", "EMAIL_ADDRESS_")
    rewritten = sorted(email for email, stamp in after.items() if stamp != before[email])
    assert rewritten == ["u3@x.io", "u7@x.io", "u9@x.io"]
    assert after["u9@x.io"][0].endswith("@0:23")  # the mark names the line that first changed it
    stored = {r["EMAIL_ADDRESS_"]: r for r in await h.rows("people", "RIID_")}
    assert stored["u3@x.io"]["CITY"] == "Zug" and "CITY" not in stored["u7@x.io"]
    assert stored["u9@x.io"]["CITY"] == "Chur" and stored["u5@x.io"]["CITY"] == "Bern"


async def test_a_custom_and_an_extension_reimport_leave_unchanged_rows_unwritten(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    merge = import_spec("c.csv", {"kind": "custom", "table": "contacts", "mode": "merge"}, CONTACT_MAPPING)
    lines = [["id", "email", "points"], ["C1", "a@x.io", "5"], ["C2", "b@x.io", ""], ["C3", "c@x.io", "7"]]
    h.write("c.csv", csv_text(lines))
    await h.run(merge, job_id=2)
    before = await stamps(h, "contacts", "customer_id")
    lines[3][2] = "8"
    h.write("c.csv", csv_text(lines))
    again = await h.run(merge, job_id=2, run=2)
    assert again.data.counts == RunCounts(read=3, updated=1, unchanged=2)
    after = await stamps(h, "contacts", "customer_id")
    assert [k for k in after if after[k] != before[k]] == ["C3"]

    await h.table("people", USER_FIELDS, kind="list")
    await h.table(
        "prefs", [{"name": "COLOR", "type": "string"}], kind="profile_extension", parent_list="people"
    )
    h.write(
        "p.csv", csv_text([LIST_HEADER, ["ann@x.io", "A1", "Ann", "Bern"], ["bob@x.io", "B1", "Bob", "Zug"]])
    )
    await h.run(list_spec("p.csv"), job_id=3)
    target = {"kind": "profile_extension", "table": "prefs", "match_column": "EMAIL_ADDRESS_"}
    prefs = import_spec("x.csv", target, [("email", "EMAIL_ADDRESS_"), ("color", "COLOR")])
    h.write("x.csv", csv_text([["email", "color"], ["ann@x.io", "red"], ["bob@x.io", "blue"]]))
    await h.run(prefs, job_id=4)
    h.write("x.csv", csv_text([["email", "color"], ["ann@x.io", "red"], ["bob@x.io", "green"]]))
    assert (await h.run(prefs, job_id=4, run=2)).data.counts == RunCounts(read=2, updated=1, unchanged=1)


def contacts_table() -> TableRecord:
    return TableRecord.model_validate({"name": "contacts", "primary_key": ["customer_id"], "fields": CONTACT_FIELDS,
                                       "created_at": datetime.now(UTC), "created_by": "test"})  # fmt: skip


def row(line: int, key: str, email: str) -> Item:
    return Item(0, line, {"customer_id": key, "email": email})


@pytest.mark.parametrize("folded", [False, True], ids=["one item per line", "repeats folded into one item"])
async def test_a_taken_over_reimport_counts_as_the_uninterrupted_run(harness: Harness, folded: bool) -> None:
    """After the checkpoint, C1's first row leaves it as it was and its second changes it; the dead attempt
    wrote that change, hiding the value from before the run. The take-over still counts C1's first row
    unchanged and its second updated, as an uninterrupted run does."""
    h = harness
    table = contacts_table()
    store = MongoAudienceStore(h.mongo, h.settings.audience_database)
    await store.ensure_table(table)
    seed = [{"customer_id": f"C{k}", "email": f"old{k}@x.io"} for k in (1, 2, 3)]
    checkpointed = [row(2, "C2", "new2@x.io")]
    c1 = [row(3, "C1", "old1@x.io"), row(4, "C1", "new1@x.io")]
    after = [*([Item(0, 4, c1[1].row, earlier=(c1[0],))] if folded else c1), row(5, "C3", "old3@x.io")]

    async def write(target: CustomMergeTarget, batches: list[list[Item]]) -> WriteOutcome:
        outcome = WriteOutcome()
        for batch in batches:
            outcome.add(await target.write(batch))
        return outcome

    async def fresh() -> None:
        await h.audience["table_contacts"].delete_many({})
        await h.audience["table_contacts"].insert_many([dict(s) for s in seed])

    await fresh()
    whole = await write(CustomMergeTarget(store, table, "9.1#1.1"), [checkpointed, *([i] for i in after)])
    expected = await h.rows("contacts", "customer_id")
    assert (whole.inserted, whole.updated, whole.unchanged) == (0, 2, 2)

    await fresh()
    counted = await write(CustomMergeTarget(store, table, "9.1#1.1"), [checkpointed])
    await write(CustomMergeTarget(store, table, "9.1#1.1"), [[i] for i in after])  # then it died
    again = CustomMergeTarget(store, table, "9.1#2.1", redo_after=lambda: (0, 2))
    counted.add(await write(again, [[i] for i in after]))
    assert (counted.inserted, counted.updated, counted.unchanged) == (0, 2, 2)
    assert await h.rows("contacts", "customer_id") == expected
