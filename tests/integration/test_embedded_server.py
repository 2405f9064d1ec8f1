"""The embedded server as the launcher runs it (shared/embedded_server.py): narrowing the candidates of a
filter with an `_id` and a top-level operator to that `_id` leaves what matches unchanged - the rest of the
query still decides, for findAndModify, guarded updates and reads; and a table's holder, found through the
writer lock's partial index, is the one the lease names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from services.executor.repository import ensure_one_writer_index
from shared.mongo import MongoClient
from shared.settings import CommonSettings

Leases = AsyncCollection[dict[str, Any]]


@pytest.fixture
async def leases(mongo: MongoClient, settings: CommonSettings) -> AsyncIterator[Leases]:
    name = settings.database("embedded")
    collection: Leases = mongo[name]["run_leases"]
    await collection.insert_many(
        [{"_id": f"old-{n}", "owner": "e0", "status": "finished"} for n in range(300)]
        + [{"_id": "run-1", "owner": "e1", "status": "running", "n": 0}]
    )
    yield collection
    await mongo.drop_database(name)


async def test_the_rest_of_the_query_still_decides(leases: Leases) -> None:
    lost = await leases.find_one_and_update(
        {"_id": "run-1", "owner": "e2", "status": "running"}, {"$inc": {"n": 1}}
    )
    held = await leases.find_one_and_update(
        {"_id": "run-1", "owner": "e1", "status": "running"}, {"$inc": {"n": 1}},
        return_document=ReturnDocument.AFTER,
    )  # fmt: skip
    assert lost is None
    assert held is not None and held["n"] == 1
    assert await leases.count_documents({"n": {"$exists": True}}) == 1


async def test_an_id_range_and_a_missing_id_still_work(leases: Leases) -> None:
    by_range = await leases.find_one_and_update(
        {"_id": {"$gte": "run-"}, "status": "running"}, {"$set": {"seen": True}},
        return_document=ReturnDocument.AFTER,
    )  # fmt: skip
    missing = await leases.find_one_and_update(
        {"_id": "run-2", "status": "running"}, {"$set": {"seen": True}}
    )
    assert by_range is not None and by_range["_id"] == "run-1" and by_range["seen"] is True
    assert missing is None
    assert await leases.count_documents({"seen": True}) == 1


async def test_an_or_beside_the_id_still_decides(leases: Leases) -> None:
    expired = {"_id": "run-1", "$or": [{"status": "finished"}, {"owner": "e9"}]}
    live = {"_id": "run-1", "$or": [{"status": "finished"}, {"owner": "e1"}]}
    refused = await leases.update_one(expired, {"$set": {"taken": True}})
    taken = await leases.update_one(live, {"$set": {"taken": True}})
    assert (refused.matched_count, taken.matched_count) == (0, 1)
    assert await leases.find(expired).to_list(None) == []
    assert [doc["_id"] for doc in await leases.find(live).to_list(None)] == ["run-1"]
    assert await leases.count_documents({"_id": {"$in": ["run-1", "old-3"]}, "$or": [{"n": 0}]}) == 1


async def test_a_tables_holder_is_found_by_the_writer_locks_partial_index(leases: Leases) -> None:
    await ensure_one_writer_index(leases)
    await leases.update_one({"_id": "run-1"}, {"$set": {"writing": "table_contacts"}})
    await leases.insert_one({"_id": "run-2", "status": "running", "writing": 5})  # not a string: not indexed
    holder = await leases.find_one({"writing": "table_contacts"}, {"status": 1})
    assert holder == {"_id": "run-1", "status": "running"}
    assert await leases.find_one({"writing": "table_other"}) is None
    assert [d["_id"] async for d in leases.find({"writing": 5})] == ["run-2"]
    with pytest.raises(DuplicateKeyError):
        await leases.update_one({"_id": "old-1"}, {"$set": {"writing": "table_contacts"}})
