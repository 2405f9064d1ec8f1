"""Imports into a list: merge by 1-2 match columns, new records numbered with fresh `RIID_` values.

A record matches a row when all match columns are equal. A row that matches none is inserted — unless
one of its match values already belongs to another record (each match column has a unique index): such
a row is rejected naming that column, never merged into the other record nor dropped. Only an insert
that lost a race (another writer inserted the same key meanwhile) is written again, as an update.

While the keys of a run are new (the last lookup found none of its batch's keys, and rows with no match
are inserted), a batch is inserted without a lookup first: the unique indexes refuse a row whose key
exists (another writer's, or — its `_id` — an earlier attempt's of this run) or whose match value
belongs to another record, and the refused rows are sorted out as a lost race always was: looked up
and written again, or rejected naming the column. RIID_ values of refused inserts are left unused (a
gap, never reused); a batch refused for more than a tenth turns the lookups back on (the rounds of
`rounds.py`, shared with the other keyed targets).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from pymongo import InsertOne, UpdateOne

from services.executor.audience import CHANGED_AT, RUN_TAG, MongoAudienceStore
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.changes import Mark, Position, leaves_as_is, plan_item
from services.executor.importers.rounds import Found, KeyedRounds, KeyPattern, Planned
from services.executor.importers.targets import birth_id, from_the_start, now_utc
from shared.catalog_records import TableRecord


class ListTarget(KeyedRounds[Item]):
    """Merge into a list by 1-2 match columns (a record matches when all of them are equal)."""

    dedupe = True
    conflicts_by_column = True  # batches sharing one match value are written in file order (pipeline)

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
        redo_after: Callable[[], Position] = from_the_start,
    ):
        # A row that matches nothing is inserted (not rejected: that needs the lookup), so a batch of new
        # keys may be inserted outright.
        inserts_new = insert_on_no_match and "RIID_" not in match_columns
        super().__init__(store, table.collection, shown_as=table.name, guesses_new=inserts_new)
        self.table = table
        self.tag = tag
        self.match_columns = match_columns
        self.insert_on_no_match = insert_on_no_match
        self.replace_all = replace_all
        self.cleared = tuple(f for f in mapped_fields if f != "RIID_")
        self.redo_after = redo_after  # the checkpoint this attempt resumed after

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        values = tuple(row.get(c) for c in self.match_columns)
        return None if any(v is None for v in values) else values

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        name = next(c for c in self.match_columns if row.get(c) is None)
        return name, "match column value is empty"

    async def _look_up(self, entries: list[Item]) -> Found:
        keys = [self.key(i.row) or () for i in entries]
        compared = {name for item in entries for name in item.row}.union(self.cleared)
        projection = ["RIID_", RUN_TAG, *compared]
        return await self.store.find_by(self.table.collection, self.match_columns, keys, projection)

    async def _plan(self, entries: list[Item], found: Found, outcome: WriteOutcome) -> Planned[Item]:
        """Updates of matched records that change them (with how each occurrence counts), rejects, and
        inserts of new records; matched records that hold a row's values already are not written."""
        now = now_utc()
        docs = [found.get(self.key(i.row) or ()) for i in entries]
        planned, new = self._plan_matched(entries, docs, outcome, now)
        if new:
            first = await self.store.reserve_riids(self.table.name, len(new))
            for offset, item in enumerate(new):
                mark = Mark(self.tag, item.start).text()
                values = {**self._values(item.row), "RIID_": first + offset, **self._stamp(now, mark)}
                kinds = ("insert", *("duplicate" for _ in item.earlier))
                planned.add(InsertOne({"_id": birth_id(self.tag, item), **values}), item, kinds)
        return planned

    def _plan_matched(
        self, items: list[Item], docs: list[dict[str, Any] | None], outcome: WriteOutcome, now: datetime
    ) -> tuple[Planned[Item], list[Item]]:
        """The updates and rejects of the rows, and the rows to insert."""
        planned: Planned[Item] = Planned()
        new: list[Item] = []
        redo_after = self.redo_after()
        for item, doc in zip(items, docs, strict=True):
            if doc is not None:
                plan = plan_item(doc, item, self.tag, update_existing=self.replace_all, redo_after=redo_after,
                                 same=partial(self._leaves_as_is, doc))  # fmt: skip
                if not plan.write:
                    outcome.tally(plan.kinds)
                else:
                    # By `_id` (the record found; RIID_ is never reused): the embedded server finds a
                    # document by `_id` faster than through the `riid` index.
                    planned.add(
                        UpdateOne({"_id": doc["_id"]}, self._update(item, now, plan.mark)), item, plan.kinds
                    )
            elif "RIID_" in self.match_columns:
                outcome.reject(
                    item, "RIID_", f"no record with RIID_ {item.row['RIID_']} (Connect assigns RIID_)"
                )
            elif not self.insert_on_no_match:
                columns = ",".join(self.match_columns)
                outcome.reject(item, columns, "no matching record and insert_on_no_match is off")
            else:
                new.append(item)
        return planned, new

    async def _sort_out(self, collided: list[tuple[Item, KeyPattern]], outcome: WriteOutcome) -> list[Item]:
        """A write that hit a unique index: a lost race if the row's full key exists now (written again,
        after a lookup), else its value of that column belongs to another record (rejected, naming it)."""
        if not collided:
            return []
        keys = [self.key(item.row) or () for item, _ in collided]
        now_there = await self.store.find_by(self.table.collection, self.match_columns, keys, ["RIID_"])
        again: list[Item] = []
        refused: dict[tuple[str, ...], list[Item]] = {}
        for (item, pattern), key in zip(collided, keys, strict=True):
            if key in now_there and (set(pattern) <= set(self.match_columns) or "_id" in pattern):
                again.append(item)  # (`_id`: this run's record, inserted by an earlier attempt)
            else:
                columns = tuple(c for c in pattern if c in item.row) or tuple(pattern)
                refused.setdefault(columns, []).append(item)
        for columns, rows in refused.items():
            await self._reject_collisions(columns, rows, outcome)
        return again

    async def _reject_collisions(
        self, columns: tuple[str, ...], rows: list[Item], outcome: WriteOutcome
    ) -> None:
        values = [tuple(item.row.get(c) for c in columns) for item in rows]
        owners = await self.store.find_by(self.table.collection, columns, values, ["RIID_"])
        column = ",".join(columns)
        for item, value in zip(rows, values, strict=True):
            riid = owners.get(value, {}).get("RIID_")
            whose = "another record" if riid is None else f"another record (RIID_ {riid})"
            shown = ", ".join(repr(v) for v in value)
            outcome.reject(item, column, f"{column} {shown} already belongs to {whose}")

    def _leaves_as_is(self, doc: dict[str, Any], row: dict[str, Any]) -> bool:
        return leaves_as_is(doc, self._values(row), self.cleared)

    def _values(self, row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if k != "RIID_"}

    def _stamp(self, now: datetime, mark: str) -> dict[str, Any]:
        return {RUN_TAG: mark, CHANGED_AT: now}

    def _update(self, item: Item, now: datetime, mark: str) -> dict[str, Any]:
        values = self._values(item.row)
        update: dict[str, Any] = {"$set": {**values, **self._stamp(now, mark)}}
        cleared = {f: "" for f in self.cleared if f not in values}
        if cleared:
            update["$unset"] = cleared
        return update
