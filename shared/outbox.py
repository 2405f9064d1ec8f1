"""Transactional outbox: the messages a change announces are stored in the transaction that makes the change.

One implementation for every service with an outbox (the catalog's change events, the scheduler's run
requests and group steps). After the commit the messages are published at once (`deliver`); if the process
dies in between or the broker refuses, a relay publishes them later (`relay`). Consumers are idempotent by
message id, so a resend is harmless: every message is published at least once.

An *entry* holds the messages of one transaction, published in their order, and is marked published once the
broker has confirmed all of them. Its optional `request_id` (unique) lets a redelivered command find the
answer it got the first time (the scheduler's run now). Before publishing an entry a relay *claims* it (a
compare-and-set of `relay_until`), so replicas relaying one outbox never publish the same entry at once; the
claim of a replica that died runs out after `claim_for`. A published entry is needed by nobody but a
redelivered command and someone reading what happened: the relay deletes those older than `retention`, at
most once a minute. Unpublished entries are never deleted.

The stored document, one per entry:

    _id          the entry's id: random hex, or the key the caller gives (the catalog: its event's id)
    messages     the messages' JSON, in order; `types` their types (decoded by `MESSAGE_TYPES`)
    published    set once the broker confirmed every message
    created_at   the commit's time: the relay and the pruning go by it (index `published, created_at`)
    created_s    the same in epoch seconds, rounded up; read only by the scheduler's previous release (its
                 relay and pruning), so a rolling upgrade or a rollback leaves no entry behind
    relay_until  claimed by a relay until then (EPOCH: free); a failed try leaves the time of the try
    request_id   optional, unique (sparse index)
    traceparents optional, one per message: the W3C trace context of its cause (tracing on: the request
                 or command that wrote it, a slot's own span), so that it is published in that trace, at
                 once or by a relay later

Entries written by earlier releases are read as well: the scheduler's had this very shape (its index was on
`created_s`; `ensure_indexes` drops it); the catalog's held one message as `message`, with no `types`,
`created_s` nor `relay_until` (their `_id` was the message id, as it still is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from shared import tracing
from shared.contracts import MESSAGE_TYPES, Envelope, parse_message
from shared.errors import RetryableError

logger = logging.getLogger(__name__)

Doc = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RETENTION = timedelta(hours=1)  # how long a published entry is kept
PRUNE_EVERY = timedelta(minutes=1)  # how often the relay deletes the older ones
RELAY_AFTER = timedelta(seconds=5)  # how old an unpublished entry is before the relay resends it
RELAY_CLAIM = timedelta(seconds=30)  # how long a relay's claim keeps the other replicas off an entry
RELAY_LIMIT = 100  # entries one relay pass looks at
PUBLISH_CONCURRENCY = 200  # confirms awaited at once when the messages need no order
# Indexes of earlier releases that every write paid for and no query needs any more.
RETIRED_INDEXES = ("published_1_created_s_1",)


class MessagePublisher(Protocol):
    async def publish(self, message: Envelope) -> None: ...


@dataclass(frozen=True)
class Entry:
    """One transaction's messages as stored; `relay_until` is the claim a relay compares and sets."""

    id: str
    messages: Sequence[Envelope]
    relay_until: datetime | None = EPOCH
    traceparents: Sequence[str | None] = ()  # each message's trace context (none given: the caller's)

    def trace_of(self, index: int) -> str | None:
        return self.traceparents[index] if index < len(self.traceparents) else None

    @classmethod
    def of(cls, message: Envelope) -> Entry:
        """The entry of a lone message stored under its own id (`add(..., entry_id=message.id)`)."""
        return cls(message.id, (message,))


def new_document(
    messages: Sequence[Envelope], now: datetime, *, request_id: str | None = None, entry_id: str | None = None,
    traceparents: Sequence[str | None] | None = None,
) -> Doc:  # fmt: skip
    """The stored form of an entry (see the module's docstring); `traceparents`: each message's cause's
    trace context (default: the span in progress, for all)."""
    doc: Doc = {
        "_id": entry_id or uuid.uuid4().hex,
        "messages": [m.model_dump_json() for m in messages],
        "types": [m.type for m in messages],
        "published": False,
        "created_at": now,
        "created_s": math.ceil(now.timestamp()),
        "relay_until": EPOCH,
    }
    if request_id is not None:
        doc["request_id"] = request_id
    traces = (
        list(traceparents) if traceparents is not None else [tracing.current_traceparent()] * len(messages)
    )
    if any(traces):
        doc["traceparents"] = traces
    return doc


def decode(doc: Doc) -> Entry:
    """An entry from its document, of this release or an earlier one."""
    if "messages" in doc:
        messages = [
            MESSAGE_TYPES[kind].model_validate_json(body)
            for kind, body in zip(doc["types"], doc["messages"], strict=True)
        ]
    else:  # the catalog's entries before the one outbox: one message each
        messages = [parse_message(doc["message"])]
    return Entry(
        str(doc["_id"]), tuple(messages), doc.get("relay_until"), tuple(doc.get("traceparents") or ())
    )


class OutboxDelivery(ABC):
    """Publishing what an outbox holds: just after the commit (`deliver`) or later (`relay`), and pruning.

    Written once over the storage of entries, which subclasses provide: `Outbox` (MongoDB) and the tests'
    stores in memory.
    """

    def __init__(self, *, retention: timedelta = RETENTION, relay_limit: int = RELAY_LIMIT) -> None:
        self.retention = retention
        self.relay_limit = relay_limit
        self._pruned_at: datetime | None = None

    @abstractmethod
    async def unclaimed(self, older_than: datetime, now: datetime, limit: int) -> list[Entry]:
        """Unpublished entries committed by `older_than` that no relay holds at `now`, those not tried
        yet first (then the least recently tried), each group oldest first."""

    @abstractmethod
    async def claim(self, entry: Entry, now: datetime) -> Entry | None:
        """Take `entry` for this relay unless another took it since it was read: the entry as claimed, or None."""

    @abstractmethod
    async def release(self, entry: Entry, now: datetime) -> None:
        """Give a claimed entry up after a failed try at `now`: free at once, behind those not tried yet."""

    @abstractmethod
    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        """One write for all; a failure is logged and leaves the entries to the relay (a resend)."""

    @abstractmethod
    async def prune(self, before: datetime) -> int:
        """Delete the entries published and created before `before`; the unpublished stay for the relay."""

    async def deliver(
        self, publisher: MessagePublisher, entries: Sequence[Entry], *, ordered: bool = True
    ) -> bool:
        """Publish entries just committed and mark those confirmed whole published (one write); what is
        refused stays for the relay. True when everything was confirmed.

        Ordered: entry after entry, message after message, up to the first refusal. Unordered, for messages
        that need no order among them (a fire's run requests, one per schedule): up to PUBLISH_CONCURRENCY
        confirms awaited at once.
        """
        publish = _in_order if ordered else _at_once
        confirmed = await publish(publisher, entries)
        if confirmed:
            await self.mark_published(confirmed)
        return len(confirmed) == len(entries)

    async def relay(
        self, publisher: MessagePublisher, older_than: timedelta = RELAY_AFTER, now: datetime | None = None
    ) -> int:
        """Publish what a crash or a refusal left unpublished for `older_than`; the entries published.

        Each entry is claimed before it is published, so two replicas never publish one entry at once. A
        refusal ends the pass (a broker that refuses one message mostly refuses the next): the entry is
        released, stamped with its try, so the next pass tries first the entries not tried yet and one that
        can never be published holds back no other. Published entries past `retention` are deleted, at
        most once every PRUNE_EVERY.
        """
        now = now or datetime.now(UTC)
        relayed = 0
        for candidate in await self.unclaimed(now - older_than, now, self.relay_limit):
            entry = await self.claim(candidate, now)
            if entry is None:
                continue  # another replica's relay took it meanwhile
            if not await self.deliver(publisher, [entry]):
                await self.release(entry, now)
                break
            relayed += 1
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self.prune(now - self.retention)
        return relayed


async def _publish(publisher: MessagePublisher, message: Envelope) -> bool:
    try:
        await publisher.publish(message)
    except RetryableError:
        logger.warning("publish failed; the outbox relay will resend", extra={"message_id": message.id})
        return False
    return True


async def _in_order(publisher: MessagePublisher, entries: Sequence[Entry]) -> list[str]:
    """The ids of the entries confirmed whole, publishing one message at a time up to the first refusal."""
    confirmed: list[str] = []
    for entry in entries:
        for i, message in enumerate(entry.messages):
            with tracing.restored(entry.trace_of(i)):
                if not await _publish(publisher, message):
                    return confirmed
        confirmed.append(entry.id)
    return confirmed


async def _at_once(publisher: MessagePublisher, entries: Sequence[Entry]) -> list[str]:
    gate = asyncio.Semaphore(PUBLISH_CONCURRENCY)

    async def one(message: Envelope, traceparent: str | None) -> bool:
        async with gate, tracing.restored_async(traceparent):
            return await _publish(publisher, message)

    async def whole(entry: Entry) -> bool:
        return all(await asyncio.gather(*(one(m, entry.trace_of(i)) for i, m in enumerate(entry.messages))))

    oks = await asyncio.gather(*(whole(e) for e in entries))
    return [entry.id for entry, ok in zip(entries, oks, strict=True) if ok]


class Outbox(OutboxDelivery):
    """An outbox in a MongoDB collection of the service's own database, written in its transactions."""

    def __init__(
        self,
        collection: AsyncCollection[Doc],
        *,
        retention: timedelta = RETENTION,
        claim_for: timedelta = RELAY_CLAIM,
        relay_limit: int = RELAY_LIMIT,
    ) -> None:
        super().__init__(retention=retention, relay_limit=relay_limit)
        self.collection = collection
        self.claim_for = claim_for

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("request_id", unique=True, sparse=True)
        await self.collection.create_index([("published", ASCENDING), ("created_at", ASCENDING)])
        for name in RETIRED_INDEXES:
            # Not there: never created here, or another replica dropped it first.
            with contextlib.suppress(OperationFailure):
                await self.collection.drop_index(name)

    async def add(
        self, session: AsyncClientSession, messages: Sequence[Envelope], *, now: datetime | None = None,
        request_id: str | None = None, entry_id: str | None = None, traceparents: Sequence[str | None] | None = None,
    ) -> str | None:  # fmt: skip
        """Store the messages a transaction must publish as one entry, in it; the entry's id (None: no messages).

        A `request_id` already stored fails the transaction with DuplicateKeyError (a redelivered command)."""
        if not messages:
            return None
        document = new_document(
            messages,
            now or datetime.now(UTC),
            request_id=request_id,
            entry_id=entry_id,
            traceparents=traceparents,
        )
        await self.collection.insert_one(document, session=session)
        return str(document["_id"])

    async def add_documents(self, session: AsyncClientSession, documents: Sequence[Doc]) -> None:
        """Entries made with `new_document` (a batch of commands, an entry each), in one insert."""
        if documents:
            await self.collection.insert_many(list(documents), ordered=True, session=session)

    async def backlog(self) -> int:
        """Entries not published yet (the `connect_outbox_backlog` gauge; on the `published` index)."""
        return await self.collection.count_documents({"published": False})

    async def find_request(self, request_id: str, session: AsyncClientSession | None = None) -> Entry | None:
        """The entry stored for `request_id`: what a redelivered command is answered with."""
        doc = await self.collection.find_one({"request_id": request_id}, session=session)
        return None if doc is None else decode(doc)

    async def unclaimed(self, older_than: datetime, now: datetime, limit: int) -> list[Entry]:
        # The embedded server plans a filter on an unindexed field as a collection scan: the claims
        # are left out here, not in the query.
        found = self.collection.find({"published": False, "created_at": {"$lte": older_than}})
        docs = await found.sort([("relay_until", ASCENDING), ("created_at", ASCENDING)]).to_list(limit)
        entries = [decode(doc) for doc in docs]
        return [e for e in entries if e.relay_until is None or e.relay_until <= now]

    async def claim(self, entry: Entry, now: datetime) -> Entry | None:
        until = _stored(now + self.claim_for)
        taken = await self.collection.update_one(
            {"_id": entry.id, "published": False, "relay_until": entry.relay_until},  # None: no such field
            {"$set": {"relay_until": until}},
        )
        return replace(entry, relay_until=until) if taken.modified_count else None

    async def release(self, entry: Entry, now: datetime) -> None:
        await self.collection.update_one(
            {"_id": entry.id, "relay_until": entry.relay_until}, {"$set": {"relay_until": _stored(now)}}
        )

    async def mark_published(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        ids = list(entry_ids)
        which = {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}
        try:
            await self.collection.update_many(which, {"$set": {"published": True}})
        except PyMongoError as exc:
            logger.warning("could not mark outbox entries published", extra={"error": str(exc)})

    async def prune(self, before: datetime) -> int:
        try:
            result = await self.collection.delete_many({"published": True, "created_at": {"$lt": before}})
        except PyMongoError as exc:
            logger.warning("could not prune the outbox", extra={"error": str(exc)})
            return 0
        return int(result.deleted_count)


def _stored(moment: datetime) -> datetime:
    """`moment` as the database keeps it (milliseconds), so a claim compares equal to what was written."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
