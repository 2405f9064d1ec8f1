"""Adapter: creates a new table's collection and indexes in the audience database."""

from __future__ import annotations

import contextlib

from pymongo.errors import CollectionInvalid, PyMongoError

from shared.audience import table_indexes
from shared.catalog_records import TableRecord
from shared.mongo import MongoClient, database_error


class MongoAudienceSchema:
    def __init__(self, client: MongoClient, audience_db: str) -> None:
        self.db = client[audience_db]

    async def create(self, table: TableRecord) -> None:
        try:
            with contextlib.suppress(CollectionInvalid):  # already there: creating is idempotent
                await self.db.create_collection(table.collection)
            await self.db[table.collection].create_indexes(table_indexes(table))
        except PyMongoError as exc:
            raise database_error(f"creating the collection of table {table.name}", exc) from exc
