"""MongoDB adapter of the catalog's own collections (the runs read model: `runs_read_model`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession as Session
from pymongo.errors import DuplicateKeyError

from shared.catalog_records import ConnectionRecord, TableRecord
from shared.collections import CatalogCollections
from shared.errors import Conflict, NotFound
from shared.mongo import MongoClient, database_errors, in_transaction
from shared.outbox import RETENTION, Outbox

T = TypeVar("T")


class MongoCatalogRepository:
    """The catalog's own collections. Multi-document changes run in transactions with the outbox."""

    def __init__(self, client: MongoClient, db_name: str, *, outbox_retention: timedelta = RETENTION) -> None:
        self.client = client
        self.db = client[db_name]
        self.outbox = Outbox(self.db[CatalogCollections.OUTBOX], retention=outbox_retention)

    async def ensure_indexes(self) -> None:
        for collection in (
            CatalogCollections.CONNECTIONS,
            CatalogCollections.TABLES,
            CatalogCollections.JOBS,
            CatalogCollections.GROUPS,
        ):
            await self.db[collection].create_index("name", unique=True)
        await self.db[CatalogCollections.JOBS].create_index("group_id")
        await self.db[CatalogCollections.GROUPS].create_index("job_ids")
        await self.outbox.ensure_indexes()

    async def atomically(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """Run `work` in one transaction (retried by the driver on transient conflicts)."""
        with database_errors("a catalog change"):
            try:
                return await in_transaction(self.client, work)
            except DuplicateKeyError as exc:
                raise Conflict(f"the name {_duplicate_name(exc)} is already taken", field="name") from exc

    async def next_id(self, kind: str, session: Session | None = None) -> int:
        doc = await self.db[CatalogCollections.COUNTERS].find_one_and_update(
            {"_id": kind},
            {"$inc": {"last": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        assert doc is not None
        return int(doc["last"])

    async def insert(self, collection: str, document: dict[str, Any], session: Session | None = None) -> None:
        with database_errors(f"storing a {collection[:-1]}"):
            try:
                await self.db[collection].insert_one(document, session=session)
            except DuplicateKeyError as exc:
                name = document.get("name", document.get("_id"))
                raise Conflict(f"a {collection[:-1]} named '{name}' already exists", field="name") from exc

    async def find(
        self, collection: str, filter_: dict[str, Any], session: Session | None = None
    ) -> dict[str, Any] | None:
        return await self.db[collection].find_one(filter_, session=session)

    async def find_all(
        self, collection: str, filter_: dict[str, Any], session: Session | None = None
    ) -> list[dict[str, Any]]:
        return [doc async for doc in self.db[collection].find(filter_, session=session)]

    async def update(
        self, collection: str, filter_: dict[str, Any], update: dict[str, Any], session: Session | None = None
    ) -> int:
        result = await self.db[collection].update_many(filter_, update, session=session)
        return result.matched_count

    async def delete(self, collection: str, filter_: dict[str, Any], session: Session | None = None) -> int:
        result = await self.db[collection].delete_many(filter_, session=session)
        return result.deleted_count

    async def page(
        self, collection: str, filter_: dict[str, Any], *, sort: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        direction = DESCENDING if sort.startswith("-") else ASCENDING
        order = [(sort.lstrip("-"), direction), ("_id", direction)]
        cursor = self.db[collection].find(filter_).sort(order).skip(offset).limit(limit)
        return [doc async for doc in cursor], await self.db[collection].count_documents(filter_)

    async def connection(self, connection_id: int) -> ConnectionRecord:
        doc = await self.find(CatalogCollections.CONNECTIONS, {"_id": connection_id})
        if doc is None:
            raise NotFound(f"connection {connection_id} does not exist", field="connection_id")
        return ConnectionRecord.model_validate(doc)

    async def table(self, name: str, field: str = "table") -> TableRecord:
        doc = await self.find(CatalogCollections.TABLES, {"name": name})
        if doc is None:
            raise NotFound(f"table '{name}' does not exist", field=field)
        return TableRecord.model_validate(doc)


def _duplicate_name(exc: DuplicateKeyError) -> str:
    key = (exc.details or {}).get("keyValue") or {}
    return f"'{key['name']}'" if "name" in key else "given"
