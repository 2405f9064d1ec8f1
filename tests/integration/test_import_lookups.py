"""Key lookups of an import (`MongoAudienceStore.find_by`) and a first load's inserts without them.

A lookup by key ranges must find exactly the records of the wanted keys however they are spread
(dense, sparse, mixed types, several key fields); a batch inserted without a lookup (the keys of the
run were new so far) must count and write as the looked-up way does when some of its keys exist.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from services.executor.audience import LOOKUP_CHUNK, SPARSE_PAUSE, MongoAudienceStore
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.lists import ListTarget
from services.executor.importers.targets import CustomMergeTarget
from shared.catalog_records import LIST_SYSTEM_FIELDS, TableField, TableKind, TableRecord
from tests.integration.test_import_reimport import contacts_table
from tests.support.executor_harness import Harness

KEY = ("customer_id",)


async def reference(
    h: Harness, collection: str, fields: tuple[str, ...], keys: list[tuple[Any, ...]]
) -> set[Any]:
    """The `_id`s of the records of `keys`, by a full scan compared in Python (a type is part of a
    value, as in the database: `True` is not `1`)."""

    def typed(values: tuple[Any, ...]) -> tuple[tuple[type, Any], ...]:
        return tuple((type(v), v) for v in values)

    wanted = {typed(k) for k in keys}
    docs = h.audience[collection].find({})
    return {d["_id"] async for d in docs if typed(tuple(d.get(f) for f in fields)) in wanted}


async def test_a_lookup_finds_exactly_the_wanted_records_however_the_keys_are_spread(
    harness: Harness,
) -> None:
    h = harness
    store = MongoAudienceStore(h.mongo, h.settings.audience_database)
    await store.ensure_table(contacts_table())
    coll = h.audience["table_contacts"]
    docs: list[dict[str, Any]] = [
        {"_id": n, "customer_id": f"C{n:05d}", "email": f"{n}@x.io"} for n in range(3000)
    ]
    docs += [{"_id": 10_000 + n, "customer_id": n, "email": "int"} for n in range(300)]  # integer keys
    docs += [{"_id": 20_000, "customer_id": True}, {"_id": 20_001, "customer_id": "C00100 "}]
    await coll.insert_many(docs)
    rng = random.Random(7)
    cases: dict[str, list[tuple[Any, ...]]] = {
        "dense": [(f"C{n:05d}",) for n in range(1000, 1600)],
        "dense with misses": [(f"C{n:05d}",) for n in range(2900, 3200)] + [("C00100x",), ("B",), ("D",)],
        "sparse": [(f"C{n:05d}",) for n in rng.sample(range(3000), 400)],
        "integers": [(n,) for n in range(0, 600, 3)],
        "mixed types": [(5,), ("C00005",), (True,), (2,), ("C00100 ",)],
        "one key": [("C00042",)],
    }
    for name, keys in cases.items():
        found = await store.find_by("table_contacts", KEY, keys, ["email"])
        assert {d["_id"] for d in found.values()} == await reference(h, "table_contacts", KEY, keys), name
        assert set(found) <= set(keys), name
        assert all(d["email"] for d in found.values() if d["_id"] < 20_000), name  # the projection holds


async def test_sparse_keys_send_the_next_chunks_of_that_collection_to_in(harness: Harness) -> None:
    """A range that returns far more records than keys (the keys are spread) is not repeated for the
    next chunks: they are looked up by their keys (`$in`), for twice as many chunks each time the
    first range after a pause is sparse again."""
    h = harness
    store = MongoAudienceStore(h.mongo, h.settings.audience_database)
    await store.ensure_table(contacts_table())
    await h.audience["table_contacts"].insert_many([{"customer_id": f"C{n:05d}"} for n in range(5000)])
    spread = [(f"C{n:05d}",) for n in range(0, 5000, 50)]
    found = await store.find_by("table_contacts", KEY, spread, [])
    assert len(found) == len(spread)
    assert store._sparse["table_contacts"] == SPARSE_PAUSE
    dense = [(f"C{n:05d}",) for n in range(LOOKUP_CHUNK * 3)]
    assert len(await store.find_by("table_contacts", KEY, dense, [])) == len(dense)
    assert store._sparse["table_contacts"] == SPARSE_PAUSE - 3  # three chunks by `$in`, no range
    rest = [(f"C{n:05d}",) for n in range(LOOKUP_CHUNK * (SPARSE_PAUSE - 3))]
    assert len(await store.find_by("table_contacts", KEY, rest, [])) == len(rest)
    assert store._sparse["table_contacts"] == 0  # the pause is over: the next chunk is a range again
    assert len(await store.find_by("table_contacts", KEY, spread, [])) == len(spread)
    assert store._sparse["table_contacts"] == 2 * SPARSE_PAUSE  # sparse again: a pause twice as long
    store._sparse["table_contacts"] = 0
    assert len(await store.find_by("table_contacts", KEY, dense, [])) == len(dense)
    assert store._sparse["table_contacts"] == 0  # dense: ranges go on, and the next pause starts short
    assert len(await store.find_by("table_contacts", KEY, spread, [])) == len(spread)
    assert store._sparse["table_contacts"] == SPARSE_PAUSE


def item(line: int, key: str, email: str) -> Item:
    return Item(0, line, {"customer_id": key, "email": email})


async def test_a_batch_inserted_without_a_lookup_counts_records_it_finds_as_the_lookup_would(
    harness: Harness,
) -> None:
    """The first batch finds none of its keys, so the next is inserted outright; another writer
    created some of its keys meanwhile (one with the row's values, one with others). Those count
    unchanged and updated, exactly as with a lookup, and the table ends as the rows say."""
    h = harness
    store = MongoAudienceStore(h.mongo, h.settings.audience_database)
    table = contacts_table()
    await store.ensure_table(table)
    target = CustomMergeTarget(store, table, "7.1#1.1", mapped=("customer_id", "email"))
    first = await target.write([item(n, f"C{n}", f"{n}@x.io") for n in range(1, 6)])
    assert (first.inserted, first.updated, first.unchanged) == (5, 0, 0)
    assert target.writer.expect_new
    await h.audience["table_contacts"].insert_many(
        [{"customer_id": "C6", "email": "6@x.io"}, {"customer_id": "C7", "email": "other@x.io"}]
    )
    before = {d["customer_id"]: d async for d in h.audience["table_contacts"].find({})}
    second = WriteOutcome()
    second.add(await target.write([item(n, f"C{n}", f"{n}@x.io") for n in range(6, 10)]))
    assert (second.inserted, second.updated, second.unchanged) == (2, 1, 1)
    after = {d["customer_id"]: d async for d in h.audience["table_contacts"].find({})}
    assert {k: d["email"] for k, d in after.items()} == {f"C{n}": f"{n}@x.io" for n in range(1, 10)}
    assert after["C6"] == before["C6"]  # unchanged: not written
    assert after["C7"]["_cx_run"].startswith("7.1#1.1@")
    # A batch whose inserts were mostly refused (C6, C7: half) looks its keys up first again.
    assert not target.writer.expect_new
    third = await target.write([item(n, f"C{n}", f"{n}@x.io") for n in range(10, 12)])
    assert (third.inserted, third.updated, third.unchanged) == (2, 0, 0)
    assert target.writer.expect_new  # that lookup found none of its keys


async def test_a_list_batch_inserted_without_a_lookup_sorts_out_what_the_indexes_refuse(
    harness: Harness,
) -> None:
    """A list on two match columns: after a batch of new keys the next is inserted outright. Its rows
    meet a record another writer created with the row's values (unchanged), one with other values
    (updated), a record holding one of its match values (rejected naming the column), and this run's
    own record inserted by an earlier attempt (its `_id`: counted by the take-over's rules)."""
    h = harness
    fields = [*LIST_SYSTEM_FIELDS, TableField(name="FIRST_NAME")]
    table = TableRecord(name="people", kind=TableKind.LIST, fields=tuple(fields), created_at=datetime.now(UTC),
                        created_by="test")  # fmt: skip
    match = ("EMAIL_ADDRESS_", "CUSTOMER_ID_")
    store = MongoAudienceStore(h.mongo, h.settings.audience_database)
    await store.ensure_table(table, match_columns=match)

    def target(tag: str, checkpoint: tuple[int, int] = (-1, 0)) -> ListTarget:
        return ListTarget(store, table, tag, match_columns=match, insert_on_no_match=True, replace_all=True,
                          mapped_fields=(*match, "FIRST_NAME"), redo_after=lambda: checkpoint)  # fmt: skip

    def person(line: int, k: int, name: str, customer: str | None = None) -> Item:
        row = {"EMAIL_ADDRESS_": f"p{k}@x.io", "CUSTOMER_ID_": customer or f"C{k}", "FIRST_NAME": name}
        return Item(0, line, row)

    dead = target("4.1#1.1")
    first = await dead.write([person(2, 1, "A"), person(3, 2, "B")])
    assert (first.inserted, dead.expect_new) == (2, True)
    await dead.write([person(9, 9, "I")])  # written past the checkpoint, then the attempt died
    people = h.audience["table_people"]
    await people.insert_many([
        {"RIID_": 100, "EMAIL_ADDRESS_": "p3@x.io", "CUSTOMER_ID_": "C3", "FIRST_NAME": "C"},
        {"RIID_": 101, "EMAIL_ADDRESS_": "p4@x.io", "CUSTOMER_ID_": "C4", "FIRST_NAME": "old"},
        {"RIID_": 102, "EMAIL_ADDRESS_": "other@x.io", "CUSTOMER_ID_": "C5", "FIRST_NAME": "O"},
    ])  # fmt: skip
    taken_over = target("4.1#2.1", checkpoint=(0, 3))
    taken_over.expect_new = True  # as after a lookup that found none of its keys
    batch = [person(4, 3, "C"), person(5, 4, "D"), person(6, 5, "E"), person(7, 6, "F"), person(9, 9, "I")]
    outcome = await taken_over.write(batch)
    assert (outcome.inserted, outcome.updated, outcome.unchanged) == (2, 1, 1)  # p6, p9 | p4 | p3
    assert [(r.line, r.field) for r in outcome.rejections] == [(6, "CUSTOMER_ID_")]
    assert not taken_over.expect_new  # half of the batch refused: the next one is looked up first
    stored = {r["EMAIL_ADDRESS_"]: r for r in await h.rows("people", "RIID_")}
    assert {e: r["FIRST_NAME"] for e, r in stored.items()} == {
        "p1@x.io": "A", "p2@x.io": "B", "p3@x.io": "C", "p4@x.io": "D", "p6@x.io": "F", "p9@x.io": "I",
        "other@x.io": "O",
    }  # fmt: skip
    assert len({r["RIID_"] for r in stored.values()}) == len(stored)
