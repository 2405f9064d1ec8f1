"""Transactional outbox: a message is stored in the same transaction as the change it announces.

After the commit the message is published at once; if the process dies in between, a relay
publishes it later (consumers are idempotent by message id, so a resend is harmless). A published
entry is needed by nobody: the relay deletes those older than `retention` (kept that long to be read
when something went wrong), at most once a minute.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from shared.contracts import Envelope, parse_message
from shared.errors import RetryableError

logger = logging.getLogger(__name__)


class MessagePublisher(Protocol):
    async def publish(self, message: Envelope) -> None: ...


# How long a published entry is kept, and how often the relay deletes the older ones.
RETENTION = timedelta(hours=1)
PRUNE_EVERY = timedelta(minutes=1)


class Outbox:
    def __init__(self, collection: AsyncCollection[dict[str, Any]], retention: timedelta = RETENTION) -> None:
        self.collection = collection
        self.retention = retention
        self._pruned_at: datetime | None = None

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("published", 1), ("created_at", 1)])

    async def add(self, message: Envelope, session: AsyncClientSession) -> None:
        document = {
            "_id": message.id,
            "message": message.model_dump_json(),
            "published": False,
            "created_at": datetime.now(UTC),
        }
        await self.collection.insert_one(document, session=session)

    async def deliver(self, publisher: MessagePublisher, messages: list[Envelope]) -> None:
        """Publish messages just committed; what fails stays for the relay."""
        for message in messages:
            try:
                await publisher.publish(message)
            except RetryableError:
                logger.warning(
                    "publish failed; the outbox relay will resend", extra={"message_id": message.id}
                )
                return
            await self.collection.update_one({"_id": message.id}, {"$set": {"published": True}})

    async def relay(self, publisher: MessagePublisher, older_than: timedelta = timedelta(seconds=5)) -> int:
        before = datetime.now(UTC) - older_than
        cursor = self.collection.find({"published": False, "created_at": {"$lt": before}}).sort(
            "created_at", 1
        )
        pending = [parse_message(doc["message"]) async for doc in cursor.limit(500)]
        await self.deliver(publisher, pending)
        now = datetime.now(UTC)
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            await self.prune(now - self.retention)
        return len(pending)

    async def prune(self, before: datetime) -> int:
        """Delete the entries published and created before `before`; the unpublished stay for the relay."""
        result = await self.collection.delete_many({"published": True, "created_at": {"$lt": before}})
        return int(result.deleted_count)
