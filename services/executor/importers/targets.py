"""Where imported rows go: a profile extension table or a custom table (merge, append, overwrite);
lists are in `lists.py`.

Every target writes a batch with one key lookup and one unordered bulk write. The lookup tells new
records (plain inserts, much cheaper than upserts) from existing ones, existing ones that already hold
the row's values (unchanged: not written at all) from those it changes, and — through `_cx_run`, the
run attempt that last wrote a row — a key repeated inside the file (the later occurrence wins; it is
counted as updated) from a record that existed before (`changes.py`). An insert that loses a race with
another writer (duplicate key) is looked up and written again, as an update of the record that won
(the rounds of `rounds.py`, shared with lists).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from pymongo import InsertOne, UpdateOne

from services.executor.audience import CHANGED_AT, RUN_TAG, MongoAudienceStore
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.changes import Position, leaves_as_is, plan_item, run_of
from services.executor.importers.rounds import Found, KeyedRounds, Planned
from shared.catalog_records import TableRecord


class Target(Protocol):
    table: TableRecord
    dedupe: bool  # a key repeated in one batch: keep the last occurrence only

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None: ...

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]: ...

    async def write(self, items: list[Item]) -> WriteOutcome: ...


def from_the_start() -> Position:
    """No checkpoint: every row of the run is (re)loaded."""
    return (-1, 0)


def now_utc() -> datetime:
    return datetime.now(UTC)


Entry = tuple[Item, tuple[Any, ...], dict[str, Any]]  # an item, its key, the values its record gets


class KeyedWriter(KeyedRounds[Entry]):
    """Insert new keys, update existing ones (`duplicate` when this attempt wrote them already), leave
    alone the records that hold a row's values already (`unchanged`, not written).

    An update sets the row's values and clears the `mapped` fields the row left empty: the record then
    holds the row's values whatever batch an earlier occurrence of its key was in (the last one wins).

    `unique_key` (a unique index on the key fields): while the keys of a run are new, a batch is
    inserted without a lookup first (`rounds.py`). The index refuses the insert of a key that exists
    (another writer's, or an earlier attempt's of this run), and a refused row goes the usual way:
    looked up, counted and written as that record tells (as an insert that lost a race always did).
    """

    def __init__(
        self,
        store: MongoAudienceStore,
        collection: str,
        key_fields: tuple[str, ...],
        tag: str,
        mapped: tuple[str, ...] = (),
        redo_after: Callable[[], Position] = from_the_start,
        shape: Callable[[dict[str, Any]], dict[str, Any]] = dict,
        *,
        unique_key: bool = False,
    ):
        super().__init__(store, collection, shown_as=collection, guesses_new=unique_key)
        self.key_fields = key_fields
        self.tag = tag
        self.cleared = tuple(f for f in mapped if f not in key_fields)
        self.redo_after = redo_after  # the checkpoint this attempt resumed after
        self.shape = shape  # a row's own values, as written (an extension leaves its match column out)

    async def _look_up(self, entries: list[Entry]) -> Found:
        compared = {name for _, _, values in entries for name in values}.union(self.cleared)
        keys = [k for _, k, _ in entries]
        return await self.store.find_by(self.collection, self.key_fields, keys, [RUN_TAG, *compared])

    async def _plan(self, entries: list[Entry], found: Found, outcome: WriteOutcome) -> Planned[Entry]:
        now, redo_after = now_utc(), self.redo_after()
        planned: Planned[Entry] = Planned()
        for entry in entries:
            item, key, values = entry
            doc = found.get(key)
            plan = plan_item(doc, item, self.tag, update_existing=True, redo_after=redo_after,
                             same=partial(self._leaves_as_is, doc))  # fmt: skip
            if not plan.write:
                outcome.tally(plan.kinds)
                continue
            stamped = {**values, RUN_TAG: plan.mark, CHANGED_AT: now}  # never `$set` an `_id`
            if doc is None:
                planned.add(InsertOne({"_id": birth_id(self.tag, item), **stamped}), entry, plan.kinds)
            else:
                planned.add(UpdateOne(self._filter(key), self._update(stamped)), entry, plan.kinds)
        return planned

    def _leaves_as_is(self, doc: dict[str, Any] | None, row: dict[str, Any]) -> bool:
        return doc is not None and leaves_as_is(doc, self.shape(row), self.cleared)

    def _filter(self, key: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.key_fields, key, strict=True))

    def _update(self, stamped: dict[str, Any]) -> dict[str, Any]:
        cleared = {f: "" for f in self.cleared if f not in stamped}
        return {"$set": stamped, "$unset": cleared} if cleared else {"$set": stamped}


def birth_id(tag: str, item: Item) -> str:
    """`_id` of a record a run inserts, `<run id>:<file>:<line>`: a take-over tells its rows from others."""
    return f"{run_of(tag)}:{item.file}:{item.line}"


def primary_key(table: TableRecord, row: dict[str, Any]) -> tuple[Any, ...] | None:
    values = tuple(row.get(name) for name in table.primary_key)
    return None if any(v is None for v in values) else values


def missing_primary_key(table: TableRecord, row: dict[str, Any]) -> tuple[str, str]:
    name = next(n for n in table.primary_key if row.get(n) is None)
    return name, "primary key value is empty"


class CustomMergeTarget:
    """Merge into a custom table by its primary key (also the loader of an overwrite's new collection)."""

    dedupe = True

    def __init__(
        self,
        store: MongoAudienceStore,
        table: TableRecord,
        tag: str,
        collection: str | None = None,
        *,
        mapped: tuple[str, ...] = (),
        redo_after: Callable[[], Position] = from_the_start,
    ):
        self.table = table
        self.writer = KeyedWriter(
            store, collection or table.collection, table.primary_key, tag, mapped, redo_after,
            unique_key=bool(table.primary_key),  # key_index: unique on the primary key
        )  # fmt: skip

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        return primary_key(self.table, row)

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        return missing_primary_key(self.table, row)

    async def write(self, items: list[Item]) -> WriteOutcome:
        return await self.writer.write([(i, self.key(i.row) or (), i.row) for i in items])


class CustomAppendTarget:
    """Append rows. Each row's `_id` is `<run id>:<file>:<line>`, so re-running a crashed run adds nothing
    twice; a row whose primary key already exists is rejected (appending never changes a row)."""

    dedupe = False

    def __init__(self, store: MongoAudienceStore, table: TableRecord, run_id: str, tag: str):
        self.store = store
        self.table = table
        self.run_id = run_id
        self.tag = tag

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        return primary_key(self.table, row)

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        return missing_primary_key(self.table, row)

    async def write(self, items: list[Item]) -> WriteOutcome:
        outcome = WriteOutcome()
        now = now_utc()
        ops = [
            InsertOne(
                {"_id": f"{self.run_id}:{i.file}:{i.line}", **i.row, RUN_TAG: self.tag, CHANGED_AT: now}
            )
            for i in items
        ]
        result = await self.store.bulk(self.table.collection, ops)
        failed = dict(result.duplicates)
        # A row appended by this run before a crash collides on `_id` (and maybe on the key first).
        ids = [ops[i]._doc["_id"] for i in failed]
        ours = await self.store.find_by(self.table.collection, ("_id",), [(i,) for i in ids], ["_id"])
        for index, item in enumerate(items):
            pattern = failed.get(index)
            if pattern is None or (ops[index]._doc["_id"],) in ours:
                outcome.inserted += 1
            else:
                key = ", ".join(f"{k}={item.row.get(k)!r}" for k in self.table.primary_key)
                outcome.reject(item, ",".join(pattern), f"a row with primary key {key} already exists")
        return outcome


class ProfileExtensionTarget:
    """Merge into a profile extension table: each row joins the list record it matches, else is rejected."""

    dedupe = True

    def __init__(
        self,
        store: MongoAudienceStore,
        table: TableRecord,
        tag: str,
        *,
        parent: TableRecord,
        match_column: str,
        mapped: tuple[str, ...] = (),
        redo_after: Callable[[], Position] = from_the_start,
    ):
        self.store = store
        self.table = table
        self.parent = parent
        self.match_column = match_column
        self.keep_match_column = table.field(match_column) is not None
        own = tuple(f for f in mapped if f != match_column or self.keep_match_column)
        self.writer = KeyedWriter(
            store, table.collection, ("RIID_",), tag, own, redo_after, shape=self._own_values,
            unique_key=True,  # key_index: unique on RIID_
        )  # fmt: skip

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        value = row.get(self.match_column)
        return None if value is None else (value,)

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        return self.match_column, "match column value is empty"

    async def write(self, items: list[Item]) -> WriteOutcome:
        outcome = WriteOutcome()
        keys = [(i.row[self.match_column],) for i in items]
        records = await self.store.find_by(self.parent.collection, (self.match_column,), keys, ["RIID_"])
        entries = []
        for item, key in zip(items, keys, strict=True):
            record = records.get(key)
            if record is None:
                outcome.reject(
                    item,
                    self.match_column,
                    f"no record in list {self.parent.name} with {self.match_column} {key[0]!r}",
                )
                continue
            values = {**self._own_values(item.row), "RIID_": record["RIID_"]}
            entries.append((item, (record["RIID_"],), values))
        outcome.add(await self.writer.write(entries))
        return outcome

    def _own_values(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != self.match_column or self.keep_match_column}
