"""The audience data (lists, profile extension tables, custom tables) in MongoDB; executors own it.

The executor creates each table's collection and indexes the first time it writes (unique keys;
lists: `RIID_` unique plus a unique sparse index per match column). Bookkeeping fields start with
`_cx_`: `_cx_run` (the run attempt that last wrote the row, which tells a key repeated inside one
file from a record that existed before), `_cx_at` (last insert or update, for incremental exports).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from shared.audience import key_index, match_index
from shared.catalog_records import LIST_MATCH_COLUMNS, TableKind, TableRecord
from shared.collections import AUDIENCE_COUNTERS
from shared.errors import PermanentError, RetryableError
from shared.mongo import MongoClient, database_error

DUPLICATE_KEY = 11000
RUN_TAG, CHANGED_AT = "_cx_run", "_cx_at"
COUNTERS = AUDIENCE_COUNTERS
# Keys per lookup query: the embedded server's `$in` costs grow with the square of its list (1,000 values
# take ~90x the time of 100 on an index), so a batch's lookup is split; on mongod the split costs little.
LOOKUP_CHUNK = 100
RANGE_SLACK = 2  # a key range returning more than this many documents per key: the keys are sparse there
SPARSE_PAUSE = 50  # chunks of a collection looked up with `$in` after a range found its keys sparse
SPARSE_PAUSE_MAX = 3200  # ... doubled each time the next range finds them sparse too, up to this


@dataclass
class BulkOutcome:
    inserted: int = 0
    upserted_indexes: set[int] = field(default_factory=set)
    matched: int = 0
    duplicates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (op index, key pattern)


def _first(key: tuple[Any, ...]) -> Any:
    return key[0]


class MongoAudienceStore:
    dry = False  # a dry run's store writes nothing (`importers/dry_store.py`)

    def __init__(self, client: MongoClient, audience_db: str) -> None:
        self.client = client
        self.db = client[audience_db]
        self.db_name = audience_db
        self._prepared: set[str] = set()
        self._sparse: dict[str, int] = {}  # collection: chunks still to look up with `$in` (find_by)
        self._pauses: dict[str, int] = {}  # collection: the last pause of its ranges (doubles while sparse)
        self._range_indexed: dict[tuple[str, str], bool] = {}  # (collection, field): a range rides an index

    def collection(self, name: str) -> Any:
        return self.db[name]

    async def ensure_table(
        self, table: TableRecord, collection: str | None = None, match_columns: Sequence[str] = ()
    ) -> None:
        """Create the collection's indexes (idempotent; remembered per process). A list gets the unique
        sparse index of a match column when an import first matches on it (each index costs writes)."""
        name = collection or table.collection
        if table.kind == TableKind.LIST:
            name = f"{name}|{','.join(sorted(match_columns))}"
        if name in self._prepared:
            return
        target = self.db[collection or table.collection]
        try:
            key = key_index(table)
            indexes = [key] if key is not None else []
            if table.kind == TableKind.LIST:
                indexes += [match_index(c) for c in LIST_MATCH_COLUMNS[1:] if c in match_columns]
            if indexes:
                await target.create_indexes(indexes)
        except PyMongoError as exc:
            raise database_error(f"indexes of {table.name}", exc) from exc
        for known in [k for k in self._range_indexed if k[0] == (collection or table.collection)]:
            del self._range_indexed[known]  # asked again: an index may be new
        self._prepared.add(name)

    def _forget(self, collection: str) -> None:
        """What this store remembers of a collection that is dropped or replaced."""
        self._prepared.discard(collection)
        self._sparse.pop(collection, None)
        self._pauses.pop(collection, None)
        for known in [k for k in self._range_indexed if k[0] == collection]:
            del self._range_indexed[known]

    async def reserve_riids(self, list_name: str, count: int) -> int:
        """The first of `count` fresh RIID_ values (a counter document; gaps after a crash, never reuse)."""
        for _attempt in range(3):  # two writers creating the counter at once: one upsert loses, then $inc
            try:
                doc = await self.db[COUNTERS].find_one_and_update(
                    {"_id": f"riid:{list_name}"},
                    {"$inc": {"value": count}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            except PyMongoError as exc:
                raise database_error("reserving RIID_ values", exc) from exc
            if doc is not None:
                return int(doc["value"]) - count + 1
        raise RetryableError(f"could not reserve RIID_ values of {list_name}")

    async def bulk(self, collection: str, operations: Sequence[Any]) -> BulkOutcome:
        """Unordered bulk write; duplicate-key errors come back per operation, others raise."""
        outcome = BulkOutcome()
        if not operations:
            return outcome
        try:
            result = await self.db[collection].bulk_write(list(operations), ordered=False)
        except BulkWriteError as exc:
            details = exc.details
            others = [e for e in details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
            if others:
                raise PermanentError(f"database refused rows: {others[0].get('errmsg', '')[:300]}") from exc
            outcome.inserted = int(details.get("nInserted", 0))
            outcome.matched = int(details.get("nMatched", 0))
            outcome.upserted_indexes = {int(u["index"]) for u in details.get("upserted", [])}
            outcome.duplicates = [
                (int(e["index"]), dict(e.get("keyPattern") or {})) for e in details.get("writeErrors", [])
            ]
            return outcome
        except PyMongoError as exc:
            raise database_error(f"writing {collection}", exc) from exc
        outcome.inserted = result.inserted_count
        outcome.matched = result.matched_count
        outcome.upserted_indexes = set((result.upserted_ids or {}).keys())
        return outcome

    async def find_by(
        self,
        collection: str,
        fields: Sequence[str],
        values: Iterable[tuple[Any, ...]],
        projection: Sequence[str],
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Existing documents by their key fields, `LOOKUP_CHUNK` keys at a time.

        A chunk is a key range (`$gte` its first key, `$lte` its last, on one key field whose values are
        all strings or all integers, ridden by an index) while the collection's keys are dense: the
        embedded server matches each document a `$in` returns against the whole list, so a chunk of 100
        found keys costs ~4x its range. A range that returns more than `RANGE_SLACK` times its keys
        (the keys are sparse there) sends the next `SPARSE_PAUSE` chunks of that collection to `$in`
        (queries with `$in` on each key field), twice as many each time the next range is sparse too
        (keys sorted as numbers but compared as strings: `user1000` .. `user1099` spans `user10000` ..);
        a dense range resets that. Either way only the documents of wanted keys count."""
        wanted = set(values)
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        ranged = await self._rangeable(collection, fields, wanted)
        ordered = sorted(wanted, key=_first if ranged else repr)
        shown = dict.fromkeys((*fields, *projection), 1)
        for start in range(0, len(ordered), LOOKUP_CHUNK):
            chunk = ordered[start : start + LOOKUP_CHUNK]
            by_range = ranged and self._sparse.get(collection, 0) <= 0
            if by_range:
                query = {fields[0]: {"$gte": chunk[0][0], "$lte": chunk[-1][0]}}
            else:
                if ranged:
                    self._sparse[collection] -= 1
                query = {f: {"$in": sorted({v[i] for v in chunk}, key=repr)} for i, f in enumerate(fields)}
            returned = 0
            try:
                # One reply up to the sparse limit (the driver's first batch is 101 documents, then a getMore).
                found_here = self.db[collection].find(query, shown, batch_size=RANGE_SLACK * len(chunk) + 11)
                async for doc in found_here:
                    returned += 1
                    key = tuple(doc.get(f) for f in fields)
                    if key in wanted:
                        found[key] = doc
            except PyMongoError as exc:
                raise database_error(f"reading {collection}", exc) from exc
            if by_range:  # sparse: pause ranges, twice as long as last time if that range was sparse too
                sparse = returned > RANGE_SLACK * len(chunk) + 10
                pause = min(self._pauses.get(collection, SPARSE_PAUSE // 2) * 2, SPARSE_PAUSE_MAX)
                self._pauses[collection] = pause if sparse else SPARSE_PAUSE // 2
                self._sparse[collection] = pause if sparse else 0
        return found

    async def _rangeable(self, collection: str, fields: Sequence[str], keys: set[tuple[Any, ...]]) -> bool:
        """A lookup of these keys may use key ranges: one key field, all its values strings or all
        integers (booleans and other types compare apart), and an index serves a range on it (asked
        of the server once per collection and field)."""
        if len(fields) != 1 or len(keys) < 2:
            return False
        kinds = {type(k[0]) for k in keys}
        if kinds != {str} and kinds != {int}:
            return False
        known = self._range_indexed.get((collection, fields[0]))
        if known is None:
            sample = next(iter(keys))[0]
            try:
                plan = await self.db[collection].find({fields[0]: {"$gte": sample, "$lte": sample}}).explain()
            except PyMongoError as exc:
                raise database_error(f"planning a lookup of {collection}", exc) from exc
            known = "IXSCAN" in repr(plan.get("queryPlanner", {}).get("winningPlan", {}))
            self._range_indexed[(collection, fields[0])] = known
        return known

    async def count(self, collection: str) -> int:
        try:
            return int(await self.db[collection].count_documents({}))
        except PyMongoError as exc:
            raise database_error(f"counting {collection}", exc) from exc

    async def drop(self, collection: str) -> None:
        self._forget(collection)
        try:
            await self.db[collection].drop()
        except PyMongoError as exc:
            raise database_error(f"dropping {collection}", exc) from exc

    async def swap_in(self, staging: str, target: str) -> None:
        """Atomically replace `target` by `staging` (renameCollection with dropTarget)."""
        self._forget(staging)
        self._forget(target)
        try:
            await self.client.admin.command(
                "renameCollection",
                f"{self.db_name}.{staging}",
                to=f"{self.db_name}.{target}",
                dropTarget=True,
            )
        except PyMongoError as exc:
            raise database_error(f"swapping {staging} into {target}", exc) from exc

    async def collections(self, prefix: str) -> list[str]:
        try:
            names = await self.db.list_collection_names()
        except PyMongoError as exc:
            raise database_error("listing collections", exc) from exc
        return [n for n in names if n.startswith(prefix)]

    async def server_time(self) -> datetime:
        try:
            hello = await self.client.admin.command("hello")
        except PyMongoError as exc:
            raise database_error("reading the server time", exc) from exc
        value = hello.get("localTime")
        if not isinstance(value, datetime):
            return datetime.now(UTC)
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    async def scan(
        self, collection: str, query: dict[str, Any], *, sort: Sequence[str], batch_size: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Documents in the order of the `sort` fields, a batch at a time (memory stays flat)."""
        batch: list[dict[str, Any]] = []
        order = [(name, ASCENDING) for name in sort]
        try:
            cursor = self.db[collection].find(query).sort(order).batch_size(batch_size)
            async for doc in cursor:
                batch.append(doc)
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        except PyMongoError as exc:
            raise database_error(f"reading {collection}", exc) from exc
        if batch:
            yield batch

    async def find_in(self, collection: str, field_name: str, values: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            return [doc async for doc in self.db[collection].find({field_name: {"$in": list(values)}})]
        except PyMongoError as exc:
            raise database_error(f"reading {collection}", exc) from exc
