"""MongoDB store of the audit trail (`ports.AuditStore`): one document per entry, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from pymongo import DESCENDING

from services.catalog.adapters.records import Collection, Document
from services.catalog.domain.audit import AuditEntry, AuditQuery
from shared.collections import CatalogCollections
from shared.mongo import database_errors


class MongoAuditStore(Collection):
    collection_name = CatalogCollections.AUDIT
    kind = "audit entry"

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("at", DESCENDING)])
        await self.collection.create_index([("kind", 1), ("item_id", 1), ("at", DESCENDING)])

    async def add(self, entries: Sequence[AuditEntry]) -> None:
        if not entries:
            return
        with database_errors("storing an audit entry"):
            documents = [asdict(entry) for entry in entries]
            if len(documents) == 1:  # one insert either way; insert_one keeps the op count plain
                await self.collection.insert_one(documents[0], session=self.session)
            else:
                await self.collection.insert_many(documents, session=self.session)

    async def page(self, query: AuditQuery, *, offset: int, limit: int) -> tuple[list[AuditEntry], int]:
        filter_ = audit_filter(query)
        cursor = (
            self.collection.find(filter_, {"_id": 0}, session=self.session)
            .sort([("at", DESCENDING), ("_id", DESCENDING)])
            .skip(offset)
            .limit(limit)
        )
        items = [AuditEntry(**doc) async for doc in cursor]
        return items, await self.collection.count_documents(filter_, session=self.session)


def audit_filter(query: AuditQuery) -> Document:
    filter_: Document = {}
    for key, value in (("kind", query.kind), ("item_id", query.item_id), ("actor", query.actor)):
        if value is not None:
            filter_[key] = value
    at: Document = {}
    if query.since is not None:
        at["$gte"] = query.since
    if query.until is not None:
        at["$lt"] = query.until
    if at:
        filter_["at"] = at
    return filter_
