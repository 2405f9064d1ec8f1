"""List and profile-extension imports: match columns, RIID_ assignment, no_update, collisions, counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.executor.audience import MongoAudienceStore
from services.executor.importers.batch import Item
from services.executor.importers.lists import ListTarget
from shared.catalog_records import LIST_SYSTEM_FIELDS, TableKind, TableRecord
from shared.contracts.jobs import TableField
from shared.contracts.runs import RunCounts, RunStatus
from tests.integration.test_import_custom_tables import LockstepStore, race, writer_pair
from tests.support.executor_harness import Harness, csv_text, import_spec, read_csv

USER_FIELDS = [{"name": "FIRST_NAME", "type": "string"}, {"name": "CITY", "type": "string"}]


def list_spec(path: str, **target: object) -> dict[str, object]:
    mapping = [("email", "EMAIL_ADDRESS_"), ("cid", "CUSTOMER_ID_"), ("name", "FIRST_NAME"), ("city", "CITY")]
    return import_spec(
        path, {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"], **target}, mapping
    )


HEADER = ["email", "cid", "name", "city"]


async def test_list_merge_assigns_unique_riids_and_replaces_matched_records(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    h.write("p1.csv", csv_text([HEADER, ["Ann@X.io", "A1", "Ann", "Bern"], ["bob@x.io", "B1", "Bob", "Genf"],
                                ["ann@x.io", "A1", "Annie", "Bern"]]))  # fmt: skip
    first = await h.run(list_spec("p1.csv"))
    assert first.data.counts == RunCounts(read=3, inserted=2, updated=1)  # ann's second line updates
    h.write("p2.csv", csv_text([HEADER, ["bob@x.io", "B1", "Robert", ""], ["cy@x.io", "C1", "Cy", "Chur"]]))
    second = await h.run(list_spec("p2.csv"), service=h.service(batch_size=1))
    assert second.data.status == RunStatus.SUCCEEDED
    assert second.data.counts == RunCounts(read=2, inserted=1, updated=1)
    # RIID_ values follow the order of each key's last occurrence in the file.
    assert await h.rows("people", "RIID_") == [
        {
            "EMAIL_ADDRESS_": "bob@x.io",
            "CUSTOMER_ID_": "B1",
            "FIRST_NAME": "Robert",
            "RIID_": 1,
        },  # CITY cleared
        {
            "EMAIL_ADDRESS_": "ann@x.io",
            "CUSTOMER_ID_": "A1",
            "FIRST_NAME": "Annie",
            "CITY": "Bern",
            "RIID_": 2,
        },
        {"EMAIL_ADDRESS_": "cy@x.io", "CUSTOMER_ID_": "C1", "FIRST_NAME": "Cy", "CITY": "Chur", "RIID_": 3},
    ]
    indexes = await h.audience["table_people"].index_information()
    assert indexes["riid"]["unique"] and indexes["match_EMAIL_ADDRESS_"]["sparse"]
    assert indexes["match_EMAIL_ADDRESS_"]["unique"]


async def test_no_update_keeps_existing_records_and_no_insert_rejects_new_ones(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    h.write("p1.csv", csv_text([HEADER, ["ann@x.io", "A1", "Ann", "Bern"]]))
    await h.run(list_spec("p1.csv"))
    h.write(
        "p2.csv", csv_text([HEADER, ["ann@x.io", "A1", "Changed", "Zug"], ["new@x.io", "N1", "New", "Zug"]])
    )
    kept = await h.run(list_spec("p2.csv", update_on_match="no_update"))
    assert kept.data.counts == RunCounts(read=2, inserted=1, unchanged=1)
    refused = await h.run(list_spec("p2.csv", insert_on_no_match=False, match_columns=["EMAIL_ADDRESS_", "CUSTOMER_ID_"]),
                          job_id=777)  # fmt: skip
    # new@x.io holds the row's values already (the run before inserted them): unchanged, not rewritten
    assert refused.data.counts == RunCounts(read=2, updated=1, unchanged=1)
    h.write("p3.csv", csv_text([HEADER, ["zed@x.io", "Z1", "Zed", "Zug"]]))
    rejected = await h.run(list_spec("p3.csv", insert_on_no_match=False), job_id=778)
    assert rejected.data.status == RunStatus.PARTIAL
    assert read_csv(h.root / "p3.csv.778.1.rejects.csv")[1] == [
        "2", "EMAIL_ADDRESS_", "no matching record and insert_on_no_match is off"
    ]  # fmt: skip
    assert [r["FIRST_NAME"] for r in await h.rows("people", "RIID_")] == ["Changed", "New"]


async def test_profile_extension_rows_join_list_records_or_are_rejected(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    await h.table("prefs", [{"name": "COLOR", "type": "string"}, {"name": "SIZE", "type": "integer"}],
                  kind="profile_extension", parent_list="people")  # fmt: skip
    h.write("p.csv", csv_text([HEADER, ["ann@x.io", "A1", "Ann", "Bern"], ["bob@x.io", "B1", "Bob", "Genf"]]))
    listed = await h.run(list_spec("p.csv"))
    assert listed.data.status == RunStatus.SUCCEEDED, listed.data.error
    h.write("prefs.csv", csv_text([["mail", "color", "size"], ["bob@x.io", "red", "42"], ["nobody@x.io", "blue", "1"],
                                   ["ANN@x.io", "green", "38"], ["bob@x.io", "black", "43"]]))  # fmt: skip
    mapping = [("mail", "EMAIL_ADDRESS_"), ("color", "COLOR"), ("size", "SIZE")]
    target = {"kind": "profile_extension", "table": "prefs", "match_column": "EMAIL_ADDRESS_"}
    run = await h.run(import_spec("prefs.csv", target, mapping), job_id=900)
    assert run.data.status == RunStatus.PARTIAL
    assert run.data.counts == RunCounts(read=4, inserted=2, updated=1, rejected=1)
    assert await h.rows("prefs", "RIID_") == [
        {"COLOR": "green", "SIZE": 38, "RIID_": 1},
        {"COLOR": "black", "SIZE": 43, "RIID_": 2},
    ]
    assert read_csv(h.root / "prefs.csv.900.1.rejects.csv") == [
        ["line", "field", "reason"],
        ["3", "EMAIL_ADDRESS_", "no record in list people with EMAIL_ADDRESS_ 'nobody@x.io'"],
    ]


PET_MATCH = {  # match column → (list file column, the values of ann and bob, a value nobody has)
    "EMAIL_ADDRESS_": ("email", ["ann@x.io", "bob@x.io"], "nobody@x.io"),
    "CUSTOMER_ID_": ("cid", ["A1", "B1"], "Z9"),
    "MOBILE_NUMBER_": ("mobile", ["+41790000001", "+41790000002"], "+41790000009"),
    "RIID_": ("riid", ["1", "2"], "99"),
}


@pytest.mark.parametrize("match_column", list(PET_MATCH))
async def test_profile_extension_matched_by_each_list_match_column(
    harness: Harness, match_column: str
) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    await h.table("people_pet", [{"name": "score", "type": "integer"}], kind="profile_extension",
                  parent_list="people")  # fmt: skip
    h.write("people.csv", csv_text([["email", "cid", "mobile"], ["ann@x.io", "A1", "+41 79 000 00 01"],
                                    ["bob@x.io", "B1", "+41 79 000 00 02"]]))  # fmt: skip
    people = [("email", "EMAIL_ADDRESS_"), ("cid", "CUSTOMER_ID_"), ("mobile", "MOBILE_NUMBER_")]
    target = {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"]}
    listed = await h.run(import_spec("people.csv", target, people))
    assert listed.data.status == RunStatus.SUCCEEDED, listed.data.error
    _, (ann, bob), nobody = PET_MATCH[match_column]
    h.write("pets.csv", csv_text([["key", "score"], [bob, "7"], [nobody, "1"], [ann, "5"]]))
    pets = {"kind": "profile_extension", "table": "people_pet", "match_column": match_column}
    run = await h.run(import_spec("pets.csv", pets, [("key", match_column), ("score", "score")]), job_id=910)
    assert run.data.status == RunStatus.PARTIAL, run.data.error
    assert run.data.counts == RunCounts(read=3, inserted=2, rejected=1)
    # The match column finds the list record; the extension stores only its own fields and RIID_.
    assert await h.rows("people_pet", "RIID_") == [{"score": 5, "RIID_": 1}, {"score": 7, "RIID_": 2}]
    reject = read_csv(h.root / "pets.csv.910.1.rejects.csv")[1]
    assert reject[:2] == ["3", match_column] and "no record in list people" in reject[2]


async def test_two_match_columns_a_row_colliding_with_another_record_is_rejected(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    match = {"match_columns": ["EMAIL_ADDRESS_", "CUSTOMER_ID_"]}
    h.write(
        "p1.csv",
        csv_text([HEADER, ["ann@example.com", "C1", "Ann", ""], ["bob@example.com", "B1", "Bob", ""]]),
    )
    await h.run(list_spec("p1.csv", **match))
    h.write("p2.csv", csv_text([HEADER, ["ann@example.com", "CX", "Ann", "Vienna"], ["bob@example.com", "B1", "Bob", "Bern"]]))  # fmt: skip
    run = await h.run(list_spec("p2.csv", **match), job_id=920)
    assert run.data.status == RunStatus.PARTIAL
    assert run.data.counts == RunCounts(read=2, updated=1, rejected=1)
    assert read_csv(h.root / "p2.csv.920.1.rejects.csv")[1:] == [
        [
            "2",
            "EMAIL_ADDRESS_",
            "EMAIL_ADDRESS_ 'ann@example.com' already belongs to another record (RIID_ 1)",
        ]
    ]
    assert [(r["CUSTOMER_ID_"], r.get("CITY")) for r in await h.rows("people", "RIID_")] == [
        ("C1", None),
        ("B1", "Bern"),
    ]


async def test_every_row_read_is_counted_once_however_its_key_repeats(harness: Harness) -> None:
    h = harness
    await h.connection()
    await h.table("people", USER_FIELDS, kind="list")
    h.write("p1.csv", csv_text([HEADER, ["ann@x.io", "A1", "Ann", "Bern"]]))
    await h.run(list_spec("p1.csv"))
    rows = [HEADER, ["ann@x.io", "A1", "Ann2", ""], ["new@x.io", "N1", "New", ""], ["ann@x.io", "A1", "Ann3", ""],
            ["new@x.io", "N1", "Newer", "Zug"], ["", "E1", "Empty", ""]]  # fmt: skip
    h.write("p2.csv", csv_text(rows))
    for batch_size in (1000, 1):  # repeats inside one batch, and across batches
        kept = await h.run(
            list_spec("p2.csv", update_on_match="no_update"), service=h.service(batch_size=batch_size)
        )
        assert kept.data.counts == RunCounts(read=5, inserted=1, updated=1, unchanged=2, rejected=1), (
            batch_size
        )
        # ann existed: left as it was; new is the run's own record: its last occurrence wins.
        assert [(r["FIRST_NAME"], r.get("CITY")) for r in await h.rows("people", "RIID_")] == [
            ("Ann", "Bern"), ("Newer", "Zug")
        ]  # fmt: skip
        await h.audience["table_people"].delete_one({"EMAIL_ADDRESS_": "new@x.io"})
    refused = await h.run(list_spec("p2.csv", insert_on_no_match=False), job_id=930)
    assert refused.data.counts == RunCounts(read=5, updated=2, rejected=3)
    assert [r[:2] for r in read_csv(h.root / "p2.csv.930.1.rejects.csv")[1:]] == [
        ["3", "EMAIL_ADDRESS_"], ["5", "EMAIL_ADDRESS_"], ["6", "EMAIL_ADDRESS_"]
    ]  # fmt: skip


async def test_two_list_merges_racing_to_insert_the_same_records_both_succeed(harness: Harness) -> None:
    h = harness
    fields = [*LIST_SYSTEM_FIELDS, TableField(name="FIRST_NAME")]
    table = TableRecord(name="people", kind=TableKind.LIST, fields=tuple(fields), created_at=datetime.now(UTC),
                        created_by="test")  # fmt: skip
    match = ("EMAIL_ADDRESS_", "CUSTOMER_ID_")
    a_store, b_store = writer_pair(h)
    await a_store.ensure_table(table, match_columns=match)

    def target(store: LockstepStore, tag: str) -> ListTarget:
        return ListTarget(store, table, tag, match_columns=match, insert_on_no_match=True, replace_all=True,
                          mapped_fields=(*match, "FIRST_NAME"))  # fmt: skip

    def rows(keys: list[int], name: str) -> list[Item]:
        return [Item(0, line, {"EMAIL_ADDRESS_": f"p{k}@x.io", "CUSTOMER_ID_": f"C{k}", "FIRST_NAME": name})
                for line, k in enumerate(keys, 2)]  # fmt: skip

    a_items = rows(list(range(10)), "A")
    b_items = rows([k for i in range(0, 10, 5) for k in (i, i + 1, i + 2, 100 + i, 101 + i)], "B")
    first, second = await race([(a_store, target(a_store, "1.1#1.1"), a_items),
                                (b_store, target(b_store, "2.1#1.1"), b_items)], batch_size=5)  # fmt: skip
    for outcome, written in ((first, a_items), (second, b_items)):
        assert outcome.inserted + outcome.updated == len(written) and not outcome.rejections
    assert first.inserted + second.inserted == 14 and first.updated + second.updated == 6
    stored = await h.rows("people", "RIID_")
    assert len(stored) == 14 and len({r["RIID_"] for r in stored}) == 14


async def test_a_taken_over_no_update_list_merge_counts_as_the_uninterrupted_run(harness: Harness) -> None:
    h = harness
    fields = [*LIST_SYSTEM_FIELDS, TableField(name="FIRST_NAME")]
    table = TableRecord(name="people", kind=TableKind.LIST, fields=tuple(fields), created_at=datetime.now(UTC),
                        created_by="test")  # fmt: skip
    store = MongoAudienceStore(h.mongo, h.settings.audience_database)
    await store.ensure_table(table, match_columns=("EMAIL_ADDRESS_",))
    await h.audience["table_people"].insert_one(
        {"RIID_": 50, "EMAIL_ADDRESS_": "old@x.io", "FIRST_NAME": "Old"}
    )

    def target(tag: str, checkpoint: tuple[int, int] = (-1, 0)) -> ListTarget:
        return ListTarget(store, table, tag, match_columns=("EMAIL_ADDRESS_",), insert_on_no_match=True,
                          replace_all=False, mapped_fields=("EMAIL_ADDRESS_", "FIRST_NAME"),
                          redo_after=lambda: checkpoint)  # fmt: skip

    def item(line: int, email: str, name: str) -> Item:
        return Item(0, line, {"EMAIL_ADDRESS_": email, "FIRST_NAME": name})

    first = [item(2, "ann@x.io", "Ann")]  # checkpointed
    second = [item(3, "bob@x.io", "Bob"), item(4, "old@x.io", "New"), item(5, "ann@x.io", "Annie")]
    dead = target("9.1#1.1")
    counted = await dead.write(first)
    await dead.write(second)  # written, not checkpointed: the executor died
    counted.add(await target("9.1#2.1", (0, 2)).write(second))
    # bob: inserted; old: existed, left alone (no_update); ann: the run's own record, updated.
    assert (counted.inserted, counted.updated, counted.unchanged) == (2, 1, 1)
    assert [r["FIRST_NAME"] for r in await h.rows("people", "RIID_")] == ["Annie", "Bob", "Old"]
