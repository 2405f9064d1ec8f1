"""MongoDB stores of the catalog's records (`ports.JobStore`, `GroupStore`, …): a collection each, read and
written alone or within a transaction's session. Mongo filters and document shapes are written here only."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession as Session
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.catalog.domain import JobQuery, Role, StoredGroup, StoredJob, StoredToken
from shared.catalog_records import ConnectionRecord, NotificationChannelRecord, PgpKeyRecord, TableRecord
from shared.collections import CatalogCollections
from shared.errors import Conflict
from shared.mongo import database_errors

Document = dict[str, Any]
Database = AsyncDatabase[Document]
M = TypeVar("M", bound=BaseModel)


class Collection:
    """One catalog collection, in `session` (a transaction's) or on its own (`None`)."""

    collection_name: ClassVar[str]
    kind: ClassVar[str]  # a record of it, in messages ("job"); its id counter

    def __init__(self, db: Database, session: Session | None) -> None:
        self.db = db
        self.collection = db[self.collection_name]
        self.session = session

    async def _insert(self, document: Document) -> None:
        with database_errors(f"storing a {self.kind}"):
            try:
                await self.collection.insert_one(document, session=self.session)
            except DuplicateKeyError as exc:
                name = document.get("name", document.get("_id"))
                raise Conflict(f"a {self.kind} named '{name}' already exists", field="name") from exc

    async def _update(self, filter_: Document, update: Document) -> int:
        result = await self.collection.update_many(filter_, update, session=self.session)
        return result.matched_count

    async def _next_id(self) -> int:
        doc = await self.db[CatalogCollections.COUNTERS].find_one_and_update(
            {"_id": self.kind},
            {"$inc": {"last": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=self.session,
        )
        assert doc is not None
        return int(doc["last"])


class RecordCollection(Collection, Generic[M]):
    """A collection of one kind of record, stored as its JSON form but for its dates (BSON dates)."""

    model: type[M]
    dates: ClassVar[tuple[str, ...]] = ("created_at",)

    async def add(self, record: M) -> None:
        await self._insert(self._document(record))

    def _document(self, record: M) -> Document:
        document = record.model_dump(mode="json", by_alias=True)
        return document | {key: getattr(record, key) for key in self.dates}

    async def _one(self, filter_: Document) -> M | None:
        doc = await self.collection.find_one(filter_, session=self.session)
        return None if doc is None else self.model.model_validate(doc)

    async def _all(self, filter_: Document) -> list[M]:
        cursor = self.collection.find(filter_, session=self.session)
        return [self.model.model_validate(doc) async for doc in cursor]

    async def _page(self, filter_: Document, *, sort: str, offset: int, limit: int) -> tuple[list[M], int]:
        """A page of the records `filter_` selects, ordered by a field of theirs (`id` is `_id`)."""
        direction = DESCENDING if sort.startswith("-") else ASCENDING
        field = sort.lstrip("-")
        order = [("_id" if field == "id" else field, direction), ("_id", direction)]
        cursor = self.collection.find(filter_).sort(order).skip(offset).limit(limit)
        items = [self.model.model_validate(doc) async for doc in cursor]
        return items, await self.collection.count_documents(filter_)


class DefinitionCollection(RecordCollection[M]):
    """User definitions (jobs, groups): numbered, named, and changed only from the version last read."""

    async def new_id(self) -> int:
        return await self._next_id()

    async def get(self, item_id: int) -> M | None:
        return await self._one({"_id": item_id})

    async def names(self, ids: Iterable[int]) -> dict[int, str]:
        cursor = self.collection.find({"_id": {"$in": list(ids)}}, {"name": 1}, session=self.session)
        return {doc["_id"]: doc["name"] async for doc in cursor}

    async def replace(self, record: M, version: int) -> bool:
        document = self._document(record)
        item_id = document.pop("_id")
        return await self._update({"_id": item_id, "version": version}, {"$set": document}) == 1


# Where a job's spec names keys (an array field matches any of its elements).
KEY_PATHS = ("spec.source.pgp.decrypt_with", "spec.source.pgp.verify_with",
             "spec.destination.pgp.encrypt_to", "spec.destination.pgp.sign_with")  # fmt: skip


class MongoJobStore(DefinitionCollection[StoredJob]):
    collection_name = CatalogCollections.JOBS
    kind = "job"
    model = StoredJob
    dates = ("created_at", "updated_at", "expires_at")

    async def get_many(self, job_ids: Sequence[int]) -> list[StoredJob]:
        return await self._all({"_id": {"$in": list(job_ids)}})

    async def page(self, query: JobQuery, *, offset: int, limit: int) -> tuple[list[StoredJob], int]:
        return await self._page(job_filter(query), sort=query.sort, offset=offset, limit=limit)

    async def remove(self, job_ids: Sequence[int]) -> None:
        await self.collection.delete_many({"_id": {"$in": list(job_ids)}}, session=self.session)

    async def naming_key(self, key_id: int) -> dict[int, str]:
        cursor = self.collection.find({"$or": [{path: key_id} for path in KEY_PATHS]}, {"name": 1},
                                      session=self.session)  # fmt: skip
        return {doc["_id"]: doc["name"] async for doc in cursor}

    async def join_group(self, job_ids: Sequence[int], group_id: int) -> None:
        await self._update({"_id": {"$in": list(job_ids)}}, {"$set": {"group_id": group_id}})

    async def leave_group(self, group_id: int) -> None:
        await self._update({"group_id": group_id}, {"$set": {"group_id": None}})


def job_filter(query: JobQuery) -> Document:
    filter_: Document = {}
    if query.name:
        filter_["name"] = {"$regex": re.escape(query.name), "$options": "i"}
    if query.job_type:
        filter_["job_type"] = query.job_type.value
    if query.state:
        filter_["active"] = query.state == "active"
    if query.group_id:
        filter_["group_id"] = query.group_id
    return filter_


class MongoGroupStore(DefinitionCollection[StoredGroup]):
    collection_name = CatalogCollections.GROUPS
    kind = "group"
    model = StoredGroup
    dates = ("created_at", "expires_at")

    async def containing(self, job_ids: Sequence[int]) -> list[StoredGroup]:
        return await self._all({"job_ids": {"$in": list(job_ids)}})

    async def page(self, *, sort: str, offset: int, limit: int) -> tuple[list[StoredGroup], int]:
        return await self._page({}, sort=sort, offset=offset, limit=limit)

    async def remove(self, group_id: int) -> None:
        await self.collection.delete_many({"_id": group_id}, session=self.session)


class MongoConnectionStore(RecordCollection[ConnectionRecord]):
    collection_name = CatalogCollections.CONNECTIONS
    kind = "connection"
    model = ConnectionRecord

    async def new_id(self) -> int:
        return await self._next_id()

    async def get(self, connection_id: int) -> ConnectionRecord | None:
        return await self._one({"_id": connection_id})

    async def page(self, *, offset: int, limit: int) -> tuple[list[ConnectionRecord], int]:
        return await self._page({}, sort="id", offset=offset, limit=limit)


class MongoNotificationChannelStore(RecordCollection[NotificationChannelRecord]):
    collection_name = CatalogCollections.NOTIFICATION_CHANNELS
    kind = "notification channel"
    model = NotificationChannelRecord

    async def new_id(self) -> int:
        return await self._next_id()

    async def get(self, channel_id: int) -> NotificationChannelRecord | None:
        return await self._one({"_id": channel_id})

    async def existing(self, channel_ids: Iterable[int]) -> set[int]:
        cursor = self.collection.find({"_id": {"$in": list(channel_ids)}}, {"_id": 1}, session=self.session)
        return {doc["_id"] async for doc in cursor}

    async def page(self, *, offset: int, limit: int) -> tuple[list[NotificationChannelRecord], int]:
        return await self._page({}, sort="id", offset=offset, limit=limit)

    async def remove(self, channel_id: int) -> bool:
        result = await self.collection.delete_one({"_id": channel_id}, session=self.session)
        return result.deleted_count == 1


class MongoPgpKeyStore(RecordCollection[PgpKeyRecord]):
    collection_name = CatalogCollections.PGP_KEYS
    kind = "key"
    model = PgpKeyRecord
    dates = ("created_at", "key_created", "expires")

    async def new_id(self) -> int:
        return await self._next_id()

    async def get(self, key_id: int) -> PgpKeyRecord | None:
        return await self._one({"_id": key_id})

    async def get_many(self, key_ids: Iterable[int]) -> dict[int, PgpKeyRecord]:
        return {key.id: key for key in await self._all({"_id": {"$in": list(key_ids)}})}

    async def page(self, *, offset: int, limit: int) -> tuple[list[PgpKeyRecord], int]:
        return await self._page({}, sort="id", offset=offset, limit=limit)

    async def remove(self, key_id: int) -> bool:
        result = await self.collection.delete_one({"_id": key_id}, session=self.session)
        return result.deleted_count == 1


class MongoTableStore(RecordCollection[TableRecord]):
    collection_name = CatalogCollections.TABLES
    kind = "table"
    model = TableRecord

    async def get(self, name: str) -> TableRecord | None:
        return await self._one({"name": name})

    async def extensions_of(self, list_name: str) -> list[TableRecord]:
        return await self._all({"parent_list": list_name})

    async def page(self, *, offset: int, limit: int) -> tuple[list[TableRecord], int]:
        return await self._page({}, sort="name", offset=offset, limit=limit)


class MongoTokenStore(Collection):
    collection_name = CatalogCollections.TOKENS
    kind = "token"

    async def get(self, token_hash: str) -> StoredToken | None:
        doc = await self.collection.find_one({"_id": token_hash}, session=self.session)
        return None if doc is None else _token(doc)

    async def add(self, token: StoredToken) -> None:
        role = token.role.name.lower()
        await self._insert({
            "_id": token.token_hash, "token_id": token.token_id, "name": token.name, "role": role,
            "created_at": token.created_at, "expires_at": token.expires_at,
        })  # fmt: skip

    async def page(self, *, offset: int, limit: int) -> tuple[list[StoredToken], int]:
        cursor = self.collection.find({}, session=self.session).sort([("created_at", 1), ("_id", 1)])
        docs = [doc async for doc in cursor.skip(offset).limit(limit)]
        total = await self.collection.count_documents({}, session=self.session)
        return [_token(doc) for doc in docs], total

    async def revoke(self, token_id: str, when: datetime) -> StoredToken | None:
        unrevoked = {"token_id": token_id, "revoked_at": None}
        doc = await self.collection.find_one_and_update(
            unrevoked,
            {"$set": {"revoked_at": when}},
            session=self.session,
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else _token(doc)

    async def touch(self, token_hash: str, when: datetime) -> None:
        await self.collection.update_one(
            {"_id": token_hash}, {"$set": {"last_used_at": when}}, session=self.session
        )


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _token(doc: dict[str, Any]) -> StoredToken:
    return StoredToken(
        doc["_id"],
        doc["name"],
        Role.parse(doc["role"]),
        _aware(doc["created_at"]) or doc["created_at"],
        token_id=doc.get("token_id") or doc["_id"][:16],  # tokens made before ids: their hash prefix
        expires_at=_aware(doc.get("expires_at")),
        last_used_at=_aware(doc.get("last_used_at")),
        revoked_at=_aware(doc.get("revoked_at")),
    )
