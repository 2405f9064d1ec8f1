"""The catalog's outbox on the real database: what is published is delivered once and pruned after its
retention; what is not published stays for the relay, however old (issue #15: published entries pruned)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.contracts import Envelope, JobDeleted
from shared.contracts.catalog import JobDeletedData
from shared.errors import RetryableError
from shared.mongo import MongoClient
from shared.outbox import Entry, Outbox


class Broker:
    """Publishes (records) every message, or refuses all while `down`."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.down = False

    async def publish(self, message: Envelope) -> None:
        if self.down:
            raise RetryableError("broker unreachable")
        self.published.append(message.id)


def deleted(job_id: int) -> JobDeleted:
    return JobDeleted(source="test", subject=str(job_id), data=JobDeletedData(job_id=job_id))


async def add(mongo: MongoClient, outbox: Outbox, message: Envelope) -> None:
    async with mongo.start_session() as session:
        await session.with_transaction(lambda s: outbox.add(s, [message], entry_id=message.id))


async def test_published_entries_are_pruned_after_their_retention_and_unpublished_ones_kept(
    mongo: MongoClient, unique: str
) -> None:
    collection = mongo[f"{unique}_catalog"]["outbox"]
    outbox, broker = Outbox(collection, retention=timedelta(hours=1)), Broker()
    await outbox.ensure_indexes()
    old_published, old_unpublished, recent = deleted(1), deleted(2), deleted(3)
    for message in (old_published, old_unpublished, recent):
        await add(mongo, outbox, message)
    await outbox.deliver(broker, [Entry.of(old_published)])
    broker.down = True
    await outbox.deliver(broker, [Entry.of(old_unpublished)])  # refused: it stays for the relay
    broker.down = False
    await outbox.deliver(broker, [Entry.of(recent)])
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    await collection.update_many({"_id": {"$in": [old_published.id, old_unpublished.id]}},
                                 {"$set": {"created_at": two_hours_ago}})  # fmt: skip

    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert await outbox.prune(hour_ago) == 1  # the old published one; the old unpublished one stays
    assert {doc["_id"] async for doc in collection.find({})} == {old_unpublished.id, recent.id}

    assert await outbox.relay(broker) == 1  # the unpublished one is published, then pruned as old
    assert broker.published == [old_published.id, recent.id, old_unpublished.id]
    assert {doc["_id"]: doc["published"] async for doc in collection.find({})} == {recent.id: True}
