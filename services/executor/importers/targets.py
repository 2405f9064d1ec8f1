"""Where imported rows go: a list, a profile extension table, or a custom table (merge, append, overwrite).

Every target writes a batch with one key lookup and one unordered bulk write. The lookup tells new
records (plain inserts, much cheaper than upserts) from existing ones, and — through `_cx_run`, the
run attempt that last wrote a row — a key repeated inside the file (the later occurrence wins and
is counted as a duplicate) from a record that existed before. An insert that races with another
writer (duplicate key) is retried as an update of the record that won.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import InsertOne, UpdateOne

from services.executor.audience import CHANGED_AT, RUN_TAG, MongoAudienceStore
from services.executor.domain import Rejection
from shared.catalog_records import TableRecord


@dataclass(frozen=True)
class Item:
    file: int
    line: int
    row: dict[str, Any]


@dataclass
class WriteOutcome:
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    unchanged: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def add(self, other: WriteOutcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.duplicates += other.duplicates
        self.unchanged += other.unchanged
        self.rejections += other.rejections

    def reject(self, item: Item, field_name: str, reason: str) -> None:
        self.rejections.append(Rejection(item.line, field_name, reason, item.file))


class Target(Protocol):
    table: TableRecord
    dedupe: bool  # a key repeated in one batch: keep the last occurrence only

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None: ...

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]: ...

    async def write(self, items: list[Item]) -> WriteOutcome: ...


def _now() -> datetime:
    return datetime.now(UTC)


class KeyedWriter:
    """Insert new keys, update existing ones, count keys this attempt already wrote as duplicates."""

    def __init__(self, store: MongoAudienceStore, collection: str, key_fields: tuple[str, ...], tag: str):
        self.store = store
        self.collection = collection
        self.key_fields = key_fields
        self.tag = tag

    async def write(
        self, entries: list[tuple[Item, tuple[Any, ...], dict[str, Any]]], *, update_existing: bool = True
    ) -> WriteOutcome:
        outcome = WriteOutcome()
        existing = await self.store.find_by(
            self.collection, self.key_fields, [k for _, k, _ in entries], [*self.key_fields, RUN_TAG]
        )
        now = _now()
        ops: list[Any] = []
        kinds: list[str] = []
        for _item, key, values in entries:
            doc = existing.get(key)
            stamped = {**values, RUN_TAG: self.tag, CHANGED_AT: now}
            if doc is None:
                ops.append(InsertOne(stamped))
                kinds.append("insert")
            elif doc.get(RUN_TAG) == self.tag:
                ops.append(UpdateOne(self._filter(key), {"$set": stamped}))
                kinds.append("duplicate")
            elif update_existing:
                ops.append(UpdateOne(self._filter(key), {"$set": stamped}))
                kinds.append("update")
            else:
                kinds.append("unchanged")
                outcome.unchanged += 1
        written = [k for k in kinds if k != "unchanged"]
        result = await self.store.bulk(self.collection, ops)
        failed = {index for index, _ in result.duplicates}
        retry: list[Any] = []
        for index, kind in enumerate(written):
            if index in failed:
                retry.append(index)
            elif kind == "insert":
                outcome.inserted += 1
            elif kind == "update":
                outcome.updated += 1
            elif kind == "duplicate":
                outcome.duplicates += 1
        if retry:  # inserts that lost a race with another writer: update the record that won
            updates = []
            for index in retry:
                document = dict(ops[index]._doc)
                key = tuple(document[f] for f in self.key_fields)
                updates.append(UpdateOne(self._filter(key), {"$set": document}, upsert=True))
            again = await self.store.bulk(self.collection, updates)
            outcome.updated += len(updates) - len(again.upserted_indexes) - len(again.duplicates)
            outcome.inserted += len(again.upserted_indexes)
        return outcome

    def _filter(self, key: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.key_fields, key, strict=True))


class CustomMergeTarget:
    """Merge into a custom table by its primary key (also the loader of an overwrite's new collection)."""

    dedupe = True

    def __init__(
        self, store: MongoAudienceStore, table: TableRecord, tag: str, collection: str | None = None
    ):
        self.table = table
        self.writer = KeyedWriter(store, collection or table.collection, table.primary_key, tag)

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        values = tuple(row.get(name) for name in self.table.primary_key)
        return None if any(v is None for v in values) else values

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        name = next(n for n in self.table.primary_key if row.get(n) is None)
        return name, "primary key value is empty"

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
        values = tuple(row.get(name) for name in self.table.primary_key)
        return None if any(v is None for v in values) else values

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        name = next(n for n in self.table.primary_key if row.get(n) is None)
        return name, "primary key value is empty"

    async def write(self, items: list[Item]) -> WriteOutcome:
        outcome = WriteOutcome()
        now = _now()
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


class ListTarget:
    """Merge into a list by 1-2 match columns (a record matches when all of them are equal)."""

    dedupe = True

    def __init__(
        self,
        store: MongoAudienceStore,
        table: TableRecord,
        tag: str,
        *,
        match_columns: tuple[str, ...],
        insert_on_no_match: bool,
        replace_all: bool,
        mapped_fields: tuple[str, ...],
    ):
        self.store = store
        self.table = table
        self.tag = tag
        self.match_columns = match_columns
        self.insert_on_no_match = insert_on_no_match
        self.replace_all = replace_all
        self.cleared = tuple(f for f in mapped_fields if f != "RIID_")

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        values = tuple(row.get(c) for c in self.match_columns)
        return None if any(v is None for v in values) else values

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        name = next(c for c in self.match_columns if row.get(c) is None)
        return name, "match column value is empty"

    async def write(self, items: list[Item]) -> WriteOutcome:
        outcome = WriteOutcome()
        collection = self.table.collection
        keys = [self.key(i.row) or () for i in items]
        existing = await self.store.find_by(
            collection, self.match_columns, keys, [*self.match_columns, "RIID_", RUN_TAG]
        )
        now = _now()
        ops: list[Any] = []
        meta: list[tuple[Item, str]] = []
        new: list[tuple[Item, dict[str, Any]]] = []
        for item, key in zip(items, keys, strict=True):
            values = {k: v for k, v in item.row.items() if k != "RIID_"}
            doc = existing.get(key)
            if doc is not None:
                duplicate = doc.get(RUN_TAG) == self.tag
                if not duplicate and not self.replace_all:
                    outcome.unchanged += 1
                    continue
                update: dict[str, Any] = {"$set": {**values, RUN_TAG: self.tag, CHANGED_AT: now}}
                cleared = {f: "" for f in self.cleared if f not in values}
                if cleared:
                    update["$unset"] = cleared
                ops.append(UpdateOne({"RIID_": doc["RIID_"]}, update))
                meta.append((item, "duplicate" if duplicate else "update"))
            elif "RIID_" in self.match_columns:
                outcome.reject(
                    item, "RIID_", f"no record with RIID_ {item.row['RIID_']} (Connect assigns RIID_)"
                )
            elif not self.insert_on_no_match:
                outcome.reject(item, "", "no matching record and insert_on_no_match is off")
            else:
                new.append((item, values))
        if new:
            first = await self.store.reserve_riids(self.table.name, len(new))
            for offset, (item, values) in enumerate(new):
                doc = {**values, "RIID_": first + offset, RUN_TAG: self.tag, CHANGED_AT: now}
                ops.append(InsertOne(doc))
                meta.append((item, "insert"))
        result = await self.store.bulk(collection, ops)
        failed = dict(result.duplicates)
        done = {"insert": 0, "update": 0, "duplicate": 0}
        retry: list[tuple[Item, dict[str, Any]]] = []
        for index, (item, kind) in enumerate(meta):
            pattern = failed.get(index)
            if pattern is None:
                done[kind] += 1
            elif kind == "insert" and set(pattern) <= set(self.match_columns):
                retry.append((item, {k: v for k, v in item.row.items() if k != "RIID_"}))
            else:
                column = ",".join(pattern)
                value = ", ".join(repr(item.row.get(c)) for c in pattern)
                outcome.reject(item, column, f"{column} {value} already belongs to another record")
        outcome.inserted += done["insert"]
        outcome.updated += done["update"]
        outcome.duplicates += done["duplicate"]
        if retry:  # inserted meanwhile by another writer: merge into that record
            ops = [
                UpdateOne(
                    {c: item.row[c] for c in self.match_columns},
                    {"$set": {**values, RUN_TAG: self.tag, CHANGED_AT: now}},
                )
                for item, values in retry
            ]
            again = await self.store.bulk(collection, ops)
            outcome.updated += again.matched
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
    ):
        self.store = store
        self.table = table
        self.parent = parent
        self.match_column = match_column
        self.keep_match_column = table.field(match_column) is not None
        self.writer = KeyedWriter(store, table.collection, ("RIID_",), tag)

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
            values = {k: v for k, v in item.row.items() if k != self.match_column or self.keep_match_column}
            values["RIID_"] = record["RIID_"]
            entries.append((item, (record["RIID_"],), values))
        outcome.add(await self.writer.write(entries))
        return outcome
