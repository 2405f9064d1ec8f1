"""Where imported rows go: a profile extension table or a custom table (merge, append, overwrite);
lists are in `lists.py`.

Every target writes a batch with one key lookup and one unordered bulk write. The lookup tells new
records (plain inserts, much cheaper than upserts) from existing ones, and — through `_cx_run`, the
run attempt that last wrote a row — a key repeated inside the file (the later occurrence wins; it is
counted as updated) from a record that existed before. An insert that loses a race with another
writer (duplicate key) is looked up and written again, as an update of the record that won.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import InsertOne, UpdateOne

from services.executor.audience import CHANGED_AT, RUN_TAG, MongoAudienceStore
from services.executor.domain import Rejection
from shared.catalog_records import TableRecord
from shared.errors import RetryableError


@dataclass(frozen=True)
class Item:
    file: int
    line: int
    row: dict[str, Any]
    raw: str = ""  # the record as in the file (cut), kept with a reject
    earlier: tuple[Item, ...] = ()  # earlier occurrences of the key in the same batch, folded into this

    @property
    def occurrences(self) -> int:
        return 1 + len(self.earlier)


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

    def count(self, item: Item, kind: str) -> None:
        """Count a written item and the earlier occurrences folded into it (each one is a row read).

        `insert`: the first occurrence created the record, the later ones updated it; `update`: the record
        existed before the run; `duplicate`: an earlier batch of this run wrote the key; `unchanged`: the
        record existed and was left as it was (no_update).
        """
        if kind == "unchanged":
            self.unchanged += item.occurrences
            return
        first_inserted = kind == "insert"
        self.inserted += first_inserted
        self.updated += item.occurrences - first_inserted
        self.duplicates += len(item.earlier) + (kind == "duplicate")

    def reject(self, item: Item, field_name: str, reason: str) -> None:
        """Reject an item and the earlier occurrences of its key folded into it (the same reason holds)."""
        for one in (*item.earlier, item):
            self.rejections.append(Rejection(one.line, field_name, reason, one.file, record=one.raw))


class Target(Protocol):
    table: TableRecord
    dedupe: bool  # a key repeated in one batch: keep the last occurrence only

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None: ...

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]: ...

    async def write(self, items: list[Item]) -> WriteOutcome: ...


RACE_ROUNDS = 4  # a batch's rows that lost a race are looked up and written again, this many times at most
Position = tuple[int, int]  # (file, line) in the source


def from_the_start() -> Position:
    """No checkpoint: every row of the run is (re)loaded."""
    return (-1, 0)


def now_utc() -> datetime:
    return datetime.now(UTC)


class KeyedWriter:
    """Insert new keys, update existing ones (`duplicate` when this attempt wrote them already).

    An update sets the row's values and clears the `mapped` fields the row left empty: the record then
    holds the row's values whatever batch an earlier occurrence of its key was in (the last one wins).
    """

    def __init__(
        self,
        store: MongoAudienceStore,
        collection: str,
        key_fields: tuple[str, ...],
        tag: str,
        mapped: tuple[str, ...] = (),
        redo_after: Callable[[], Position] = from_the_start,
    ):
        self.store = store
        self.collection = collection
        self.key_fields = key_fields
        self.tag = tag
        self.cleared = tuple(f for f in mapped if f not in key_fields)
        self.redo_after = redo_after  # the checkpoint this attempt resumed after

    async def write(
        self, entries: list[tuple[Item, tuple[Any, ...], dict[str, Any]]], *, update_existing: bool = True
    ) -> WriteOutcome:
        outcome = WriteOutcome()
        for _round in range(RACE_ROUNDS):
            entries = await self._round(entries, outcome, update_existing)
            if not entries:
                return outcome
        raise RetryableError(
            f"{len(entries)} row(s) kept colliding with concurrent writers of {self.collection}"
        )

    async def _round(
        self,
        entries: list[tuple[Item, tuple[Any, ...], dict[str, Any]]],
        outcome: WriteOutcome,
        update_existing: bool,
    ) -> list[tuple[Item, tuple[Any, ...], dict[str, Any]]]:
        """One lookup and one bulk write; returns the entries whose insert lost a race (to do again)."""
        existing = await self.store.find_by(
            self.collection, self.key_fields, [k for _, k, _ in entries], [*self.key_fields, RUN_TAG]
        )
        now, redo_after = now_utc(), self.redo_after()
        ops: list[Any] = []
        planned: list[tuple[int, str]] = []  # (entry index, kind) per operation
        for index, (item, key, values) in enumerate(entries):
            doc = existing.get(key)
            kind = classify(doc, self.tag, update_existing=update_existing, redo_after=redo_after)
            if kind == "unchanged":
                outcome.count(item, kind)
                continue
            stamped = {**values, RUN_TAG: self.tag, CHANGED_AT: now}  # never `$set` an `_id`
            if doc is None:
                ops.append(InsertOne({"_id": birth_id(self.tag, item), **stamped}))
            else:
                ops.append(UpdateOne(self._filter(key), self._update(stamped)))
            planned.append((index, kind))
        result = await self.store.bulk(self.collection, ops)
        failed = {index for index, _ in result.duplicates}
        lost = []
        for op_index, (index, kind) in enumerate(planned):
            if op_index in failed:
                lost.append(entries[index])
            else:
                outcome.count(entries[index][0], kind)
        return lost

    def _filter(self, key: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.key_fields, key, strict=True))

    def _update(self, stamped: dict[str, Any]) -> dict[str, Any]:
        cleared = {f: "" for f in self.cleared if f not in stamped}
        return {"$set": stamped, "$unset": cleared} if cleared else {"$set": stamped}


def classify(doc: dict[str, Any] | None, tag: str, *, update_existing: bool, redo_after: Position) -> str:
    """How a row counts that found `doc` by its key (see `WriteOutcome.count`)."""
    if doc is None:
        return "insert"
    if doc.get(RUN_TAG) == tag:
        return "duplicate"
    born = _born_in(doc.get("_id"), tag)
    if born is not None:  # inserted by an earlier attempt of this run (taken over, or retried)
        # Before the checkpoint it was counted, so this is a later occurrence; after it, the attempt that
        # wrote it ended uncounted: this is that insert again (the counts of an uninterrupted run).
        return "insert" if born > redo_after else "duplicate"
    return "update" if update_existing else "unchanged"


def birth_id(tag: str, item: Item) -> str:
    """`_id` of a record a run inserts, `<run id>:<file>:<line>`: a take-over tells its rows from others."""
    return f"{tag.partition('#')[0]}:{item.file}:{item.line}"


def _born_in(doc_id: Any, tag: str) -> Position | None:
    """Where this run inserted the record (file, line), if it did."""
    prefix = f"{tag.partition('#')[0]}:"
    if not isinstance(doc_id, str) or not doc_id.startswith(prefix):
        return None
    file, _, line = doc_id[len(prefix) :].partition(":")
    return (int(file), int(line)) if file.isdigit() and line.isdigit() else None


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
            store, collection or table.collection, table.primary_key, tag, mapped, redo_after
        )

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
        self.writer = KeyedWriter(store, table.collection, ("RIID_",), tag, own, redo_after)

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
