"""A list re-import updates the very record its lookup found (written by `_id`), whoever created it."""

from __future__ import annotations

from bson import ObjectId

from shared.contracts.runs import RunCounts
from tests.integration.test_import_lists import HEADER, USER_FIELDS, list_spec
from tests.support.executor_harness import (
    Harness,
    csv_text,
)


async def test_a_reimport_updates_records_created_outside_connect_in_place(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    rows = [[f"u{n}@x.io", f"C{n}", f"Name{n}", "Bern"] for n in range(5)]
    h.write("p1.csv", csv_text([HEADER, *rows]))
    assert (await h.run(list_spec("p1.csv"), job_id=1)).data.counts == RunCounts(read=5, inserted=5)
    # A record another tool wrote: an ObjectId `_id`, its own RIID_, no run mark.
    outside = ObjectId()
    await h.audience["table_people"].insert_one(
        {"_id": outside, "RIID_": 900, "EMAIL_ADDRESS_": "ann@x.io", "CUSTOMER_ID_": "A1", "CITY": "Sion"}
    )
    before = {r["EMAIL_ADDRESS_"]: r for r in await h.rows("people", "RIID_")}
    rows[2][3] = "Zug"
    rows.append(["ann@x.io", "A1", "Ann", "Chur"])
    h.write("p2.csv", csv_text([HEADER, *rows]))
    again = await h.run(list_spec("p2.csv"), job_id=1, run=2)
    assert again.data.counts == RunCounts(read=6, updated=2, unchanged=4)
    after = {r["EMAIL_ADDRESS_"]: r for r in await h.rows("people", "RIID_")}
    assert sorted(after) == sorted(before)  # no record added
    ann = await h.audience["table_people"].find_one({"_id": outside})
    assert ann is not None and ann["RIID_"] == 900
    assert (ann["CITY"], ann["FIRST_NAME"]) == ("Chur", "Ann")
    assert after["u2@x.io"]["CITY"] == "Zug" and after["u2@x.io"]["RIID_"] == before["u2@x.io"]["RIID_"]
    assert all(after[e] == before[e] for e in before if e not in ("u2@x.io", "ann@x.io"))
