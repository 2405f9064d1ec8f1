"""The audience store of a dry run: it reads the tables and writes nothing.

A dry run is an import run like any other — same reader, mapping, checks, targets and rounds — whose
store is this one: lookups read the real collections, and every write a target plans is kept in
memory instead (`bulk`), where later lookups of the same run find it. So a key repeated across
batches counts as a real run counts it (inserted once, then updated), an insert a unique index would
refuse is refused here too (the indexes the table has or the run would create: `ensure_table`), and
an overwrite's new collection is a collection nobody ever creates. Nothing reaches the database: no
index is created, no RIID_ counter advanced (fresh RIID_ values continue from the counter's value,
read), no collection dropped or swapped.

Memory: the rows a dry run would write are held until it ends (a dry run is for checking a file, not
for the largest loads; docs/executor.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.errors import PyMongoError

from services.executor.audience import COUNTERS, BulkOutcome, MongoAudienceStore
from shared.audience import key_index, match_index
from shared.catalog_records import LIST_MATCH_COLUMNS, TableKind, TableRecord
from shared.errors import PermanentError
from shared.mongo import database_error

Key = tuple[Any, ...]
Fields = tuple[str, ...]


class _Index:
    """A unique index as the dry run checks it: its fields, and whether a row lacking one is left out."""

    def __init__(self, fields: Fields, sparse: bool) -> None:
        self.fields = fields
        self.sparse = sparse

    def key(self, doc: dict[str, Any]) -> Key | None:
        if self.sparse and any(f not in doc for f in self.fields):
            return None
        return tuple(doc.get(f) for f in self.fields)


class _Planned:
    """One collection's rows as the dry run would leave them: the rows it would write, by identity."""

    def __init__(self) -> None:
        self.rows: dict[Any, dict[str, Any]] = {}
        self.inserted = 0  # rows that would be new (a count of the collection adds them)
        self.by_fields: dict[Fields, dict[Key, Any]] = {}  # lookup indexes over `rows`, built when asked

    def index(self, fields: Fields) -> dict[Key, Any]:
        found = self.by_fields.get(fields)
        if found is None:
            found = {tuple(row.get(f) for f in fields): ident for ident, row in self.rows.items()}
            self.by_fields[fields] = found
        return found

    def put(self, ident: Any, row: dict[str, Any]) -> None:
        self.rows[ident] = row
        for fields, index in self.by_fields.items():
            index[tuple(row.get(f) for f in fields)] = ident


class DryRunStore(MongoAudienceStore):
    """A `MongoAudienceStore` that reads and never writes (see the module's docstring)."""

    dry = True

    def __init__(self, store: MongoAudienceStore) -> None:
        super().__init__(store.client, store.db_name)
        self._planned: dict[str, _Planned] = {}
        self._unique: dict[str, list[_Index]] = {}
        self._riids: dict[str, int] = {}

    def _of(self, collection: str) -> _Planned:
        return self._planned.setdefault(collection, _Planned())

    async def ensure_table(
        self, table: TableRecord, collection: str | None = None, match_columns: Sequence[str] = ()
    ) -> None:
        """The unique indexes a real run has or would create: checked by `bulk`, created by nobody."""
        name = collection or table.collection
        models = [key_index(table)]
        if table.kind == TableKind.LIST:
            models += [match_index(c) for c in LIST_MATCH_COLUMNS[1:] if c in match_columns]
        found = [(tuple(m.document["key"]), bool(m.document.get("sparse"))) for m in models if m]
        try:
            existing = await self.db[name].index_information()  # none for a collection that does not exist
        except PyMongoError as exc:
            raise database_error(f"indexes of {table.name}", exc) from exc
        found += [
            (tuple(f for f, _ in info["key"]), bool(info.get("sparse")))
            for info in existing.values()
            if info.get("unique")
        ]
        indexes = {i.fields: i for i in self._unique.get(name, [])}
        for fields, sparse in found:
            indexes.setdefault(fields, _Index(fields, sparse))
        self._unique[name] = list(indexes.values())

    async def reserve_riids(self, list_name: str, count: int) -> int:
        """Values after the list's counter, as a real run would get them; the counter is only read."""
        if list_name not in self._riids:
            try:
                doc = await self.db[COUNTERS].find_one({"_id": f"riid:{list_name}"})
            except PyMongoError as exc:
                raise database_error("reading the RIID_ counter", exc) from exc
            # Batches plan at once (in flight): another may have read the counter while this one waited,
            # and taken values from it since; overwriting its count would hand the same RIID_ out twice.
            self._riids.setdefault(list_name, int(doc["value"]) if doc else 0)
        first = self._riids[list_name] + 1
        self._riids[list_name] += count
        return first

    async def find_by(
        self,
        collection: str,
        fields: Sequence[str],
        values: Iterable[tuple[Any, ...]],
        projection: Sequence[str],
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """What a real run's lookup would find: the table's records, as this dry run would have left them."""
        wanted = set(values)
        found = await super().find_by(collection, fields, wanted, projection) if wanted else {}
        planned = self._planned.get(collection)
        if planned is None:
            return found
        index = planned.index(tuple(fields))
        for key in wanted:
            ident = index.get(key)
            if ident is not None:
                found[key] = {**found.get(key, {}), **planned.rows[ident]}
        return found

    async def bulk(self, collection: str, operations: Sequence[Any]) -> BulkOutcome:
        """The outcome the unordered bulk write would have: an insert whose unique key exists (in the table
        or among this run's planned rows) is refused as the index would refuse it; nothing is written."""
        outcome = BulkOutcome()
        taken = await self._taken_in_table(collection, operations)
        planned = self._of(collection)
        for index, op in enumerate(operations):
            if isinstance(op, InsertOne):
                row = dict(op._doc)
                refused = self._refused_by(collection, planned, row, taken)
                if refused is not None:
                    outcome.duplicates.append((index, refused))
                    continue
                planned.put(("_id", row.get("_id")), row)
                planned.inserted += 1
                outcome.inserted += 1
            elif isinstance(op, UpdateOne) and isinstance(op._doc, Mapping):
                self._update(planned, dict(op._filter), dict(op._doc))
                outcome.matched += 1
            else:
                raise PermanentError(f"a dry run cannot plan a {type(op).__name__}")
        return outcome

    async def _taken_in_table(self, collection: str, operations: Sequence[Any]) -> dict[Fields, set[Key]]:
        """The unique keys of the inserts that the table's records hold already (one lookup per index)."""
        inserts = [dict(op._doc) for op in operations if isinstance(op, InsertOne)]
        taken: dict[Fields, set[Key]] = {}
        for unique in [_Index(("_id",), False), *self._unique.get(collection, [])]:
            keys = {k for row in inserts if (k := unique.key(row)) is not None}
            if keys:
                found = await super().find_by(collection, unique.fields, keys, ["_id"])
                taken[unique.fields] = set(found)
        return taken

    def _refused_by(
        self, collection: str, planned: _Planned, row: dict[str, Any], taken: dict[Fields, set[Key]]
    ) -> dict[str, Any] | None:
        for unique in [_Index(("_id",), False), *self._unique.get(collection, [])]:
            key = unique.key(row)
            if key is None:
                continue
            if key in taken.get(unique.fields, set()) or key in planned.index(unique.fields):
                return dict.fromkeys(unique.fields, 1)  # the key pattern a duplicate-key error names
        return None

    def _update(self, planned: _Planned, filter_: dict[str, Any], update: dict[str, Any]) -> None:
        fields = tuple(filter_)
        key = tuple(filter_[f] for f in fields)
        ident = planned.index(fields).get(key, ("filter", fields, key))
        row = {**planned.rows.get(ident, filter_), **update.get("$set", {})}
        for name in update.get("$unset", {}):
            row.pop(name, None)
        planned.put(ident, row)

    async def count(self, collection: str) -> int:
        planned = self._planned.get(collection)
        return await super().count(collection) + (planned.inserted if planned else 0)

    async def drop(self, collection: str) -> None:
        """Only an overwrite's new collection is dropped, before it loads: here it was never created."""
        self._planned.pop(collection, None)

    async def swap_in(self, staging: str, target: str) -> None:
        """Nothing is swapped: the run reports that it would replace the table."""
