"""List and profile-extension imports: match columns, RIID_ assignment, no_update, unmatched rows."""

from __future__ import annotations

from shared.contracts.runs import RunStatus
from tests.integration.test_executor_harness import Harness, csv_text, harness_fixture, import_spec, read_csv  # noqa: F401

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
    assert first.data.counts.model_dump() == {"read": 3, "inserted": 2, "updated": 0, "rejected": 0}
    h.write("p2.csv", csv_text([HEADER, ["bob@x.io", "B1", "Robert", ""], ["cy@x.io", "C1", "Cy", "Chur"]]))
    second = await h.run(list_spec("p2.csv"), service=h.service(batch_size=1))
    assert second.data.status == RunStatus.SUCCEEDED
    assert second.data.counts.model_dump() == {"read": 2, "inserted": 1, "updated": 1, "rejected": 0}
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
    assert kept.data.counts.model_dump() == {"read": 2, "inserted": 1, "updated": 0, "rejected": 0}
    refused = await h.run(list_spec("p2.csv", insert_on_no_match=False, match_columns=["EMAIL_ADDRESS_", "CUSTOMER_ID_"]),
                          job_id=777)  # fmt: skip
    assert refused.data.counts.model_dump() == {"read": 2, "inserted": 0, "updated": 2, "rejected": 0}
    h.write("p3.csv", csv_text([HEADER, ["zed@x.io", "Z1", "Zed", "Zug"]]))
    rejected = await h.run(list_spec("p3.csv", insert_on_no_match=False), job_id=778)
    assert rejected.data.status == RunStatus.PARTIAL
    assert read_csv(h.root / "p3.csv.778.1.rejects.csv")[1] == [
        "2", "", "no matching record and insert_on_no_match is off"
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
    assert run.data.counts.model_dump() == {"read": 4, "inserted": 2, "updated": 0, "rejected": 1}
    assert await h.rows("prefs", "RIID_") == [
        {"COLOR": "green", "SIZE": 38, "RIID_": 1},
        {"COLOR": "black", "SIZE": 43, "RIID_": 2},
    ]
    assert read_csv(h.root / "prefs.csv.900.1.rejects.csv") == [
        ["line", "field", "reason"],
        ["3", "EMAIL_ADDRESS_", "no record in list people with EMAIL_ADDRESS_ 'nobody@x.io'"],
    ]
