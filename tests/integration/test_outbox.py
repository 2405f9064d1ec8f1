"""The one outbox (`shared.outbox`) on the real database: relays of two replicas racing over the same
entries publish each entry once; an entry's messages go out in their order; a refused entry holds back no
other; a dead replica's claim runs out; entries written by earlier releases are relayed and pruned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from shared.contracts import Envelope, GroupDeleted, JobDeleted
from shared.contracts.catalog import GroupDeletedData, JobDeletedData
from shared.errors import RetryableError
from shared.mongo import MongoClient, create_client
from shared.outbox import RELAY_CLAIM, Entry, Outbox

NOW = datetime.now(UTC).replace(microsecond=0)
LONG_AGO = NOW - timedelta(minutes=10)  # older than any relay's `older_than`


class Broker:
    """Records what it is given; refuses the message ids in `refused`, or everything while `down`."""

    def __init__(self, refused: Sequence[str] = ()) -> None:
        self.published: list[str] = []
        self.refused = set(refused)
        self.down = False

    async def publish(self, message: Envelope) -> None:
        if self.down or message.id in self.refused:
            raise RetryableError("broker refused")
        self.published.append(message.id)


class Held(Broker):
    """A broker whose first publish waits until `go` is set (another replica's relay published meanwhile)."""

    def __init__(self, go: asyncio.Event) -> None:
        super().__init__()
        self.go = go

    async def publish(self, message: Envelope) -> None:
        if not self.published:
            await asyncio.wait_for(self.go.wait(), 10)
        await super().publish(message)


class Signalling(Broker):
    def __init__(self, done: asyncio.Event) -> None:
        super().__init__()
        self.done = done

    async def publish(self, message: Envelope) -> None:
        await super().publish(message)
        self.done.set()


def deleted(job_id: int) -> JobDeleted:
    return JobDeleted(source="test", subject=str(job_id), data=JobDeletedData(job_id=job_id))


def group_deleted(group_id: int) -> GroupDeleted:
    return GroupDeleted(source="test", subject=str(group_id), data=GroupDeletedData(group_id=group_id))


@pytest.fixture
async def outbox(mongo: MongoClient, unique: str) -> AsyncIterator[Outbox]:
    box = Outbox(mongo[f"{unique}_outbox"]["outbox"])
    await box.ensure_indexes()
    yield box
    await mongo.drop_database(f"{unique}_outbox")


async def add(
    mongo: MongoClient, outbox: Outbox, messages: Sequence[Envelope], at: datetime = LONG_AGO
) -> str:
    async with mongo.start_session() as session:
        entry = await session.with_transaction(lambda s: outbox.add(s, messages, now=at))
    assert entry is not None
    return entry


async def unpublished(outbox: Outbox) -> set[str]:
    return {doc["_id"] async for doc in outbox.collection.find({"published": False})}


async def test_two_replicas_relaying_the_same_entries_publish_each_once(
    mongo: MongoClient, mongo_url: str, outbox: Outbox
) -> None:
    messages = [deleted(job_id) for job_id in range(1, 41)]
    for message in messages:
        await add(mongo, outbox, [message])
    other_client = create_client(mongo_url)
    try:
        other = Outbox(other_client[outbox.collection.database.name]["outbox"])  # another replica
        go = asyncio.Event()
        first, second = Held(go), Signalling(go)  # the first waits until the second has published one
        counts = await asyncio.gather(outbox.relay(first, now=NOW), other.relay(second, now=NOW))
    finally:
        await other_client.close()
    published = first.published + second.published
    assert sorted(published) == sorted(m.id for m in messages)  # each once, none left out
    assert counts[0] == len(first.published) >= 1 and counts[1] == len(second.published) >= 1
    assert await unpublished(outbox) == set()


async def test_an_entry_publishes_its_messages_in_order_after_the_commit_and_when_relayed(
    mongo: MongoClient, outbox: Outbox
) -> None:
    messages = [group_deleted(5), deleted(3), deleted(1), deleted(2)]
    entry_id = await add(mongo, outbox, messages)
    refusing = Broker(refused=[messages[2].id])
    assert not await outbox.deliver(refusing, [Entry(entry_id, messages)])
    assert refusing.published == [messages[0].id, messages[1].id]  # up to the refusal, in order
    assert await unpublished(outbox) == {entry_id}  # stays for the relay, whole

    broker = Broker()
    assert await outbox.relay(broker, now=NOW) == 1
    assert broker.published == [m.id for m in messages]
    assert await unpublished(outbox) == set()
    stored = await outbox.collection.find_one({"_id": entry_id})
    assert stored is not None and stored["types"] == [m.type for m in messages]


async def test_a_refused_entry_is_tried_again_after_the_others_and_holds_none_back(
    mongo: MongoClient, outbox: Outbox
) -> None:
    poison, second, third = deleted(1), deleted(2), deleted(3)
    ids = [
        await add(mongo, outbox, [m], at=LONG_AGO + timedelta(seconds=i))
        for i, m in enumerate((poison, second, third))
    ]
    broker = Broker(refused=[poison.id])
    assert await outbox.relay(broker, now=NOW) == 0  # the oldest refused: the pass ends there
    assert await outbox.relay(broker, now=NOW) == 2  # those not tried yet first, then the refused again
    assert broker.published == [second.id, third.id]
    assert await unpublished(outbox) == {ids[0]}
    broker.refused.clear()
    assert await outbox.relay(broker, now=NOW) == 1
    assert broker.published == [second.id, third.id, poison.id]


async def test_the_claim_of_a_replica_that_died_runs_out(mongo: MongoClient, outbox: Outbox) -> None:
    entry_id = await add(mongo, outbox, [deleted(7)])
    (candidate,) = await outbox.unclaimed(NOW, NOW, 10)
    assert await outbox.claim(candidate, NOW) is not None  # a replica claims it, then dies
    assert await outbox.claim(candidate, NOW) is None  # the same entry as read before: taken
    assert await outbox.unclaimed(NOW, NOW, 10) == []
    broker = Broker()
    assert await outbox.relay(broker, now=NOW + RELAY_CLAIM - timedelta(seconds=1)) == 0
    assert await outbox.relay(broker, now=NOW + RELAY_CLAIM) == 1
    assert broker.published == [candidate.messages[0].id]
    assert await unpublished(outbox) == set() and entry_id == candidate.id


async def test_entries_of_earlier_releases_are_relayed_and_pruned(mongo: MongoClient, outbox: Outbox) -> None:
    """The catalog's former entries (one `message`, no claim) and the scheduler's (indexed on `created_s`)."""
    legacy, current = deleted(1), deleted(2)
    await outbox.collection.insert_one(
        {"_id": legacy.id, "message": legacy.model_dump_json(), "published": False, "created_at": LONG_AGO}
    )
    await outbox.collection.create_index([("published", 1), ("created_s", 1)])
    await outbox.ensure_indexes()  # drops the scheduler's former index: every write paid for it
    names = {index["name"] async for index in await outbox.collection.list_indexes()}
    assert names == {"_id_", "request_id_1", "published_1_created_at_1"}
    await add(mongo, outbox, [current])

    broker = Broker()
    assert await outbox.relay(broker, now=NOW) == 2
    assert broker.published == [legacy.id, current.id]
    assert await unpublished(outbox) == set()
    assert await outbox.prune(NOW) == 2  # both published, both older than the cut
