"""MongoDB store of `Idempotency-Key` attempts (`ports.IdempotencyRecords`): one document per caller and key,
removed by a TTL index 24 h after its claim (and treated as absent past that when read, whatever the server)."""

from __future__ import annotations

import base64
import logging
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from services.catalog.domain.idempotency import RETENTION, Answer, Attempt, record_id_of
from shared.collections import CatalogCollections
from shared.errors import RetryableError
from shared.mongo import MongoClient, database_errors
from shared.secrets import Binding, SecretBox

logger = logging.getLogger(__name__)

Document = dict[str, Any]
CLAIM_TRIES = 3  # a claim that found a record gone (released, expired) meanwhile tries again


class MongoIdempotencyRecords:
    def __init__(self, client: MongoClient, db_name: str, box: SecretBox) -> None:
        self.collection = client[db_name][CatalogCollections.IDEMPOTENCY]
        self.box = box

    async def ensure_indexes(self) -> None:
        try:
            await self.collection.create_index(
                "created_at", expireAfterSeconds=int(RETENTION.total_seconds())
            )
        except PyMongoError as exc:  # a server without TTL indexes: expiry is still checked on read
            logger.warning("no TTL index on idempotency records", extra={"error": str(exc)})

    async def claim(self, attempt: Attempt) -> Attempt | None:
        with database_errors("claiming an idempotency key"):
            for _ in range(CLAIM_TRIES):
                try:
                    await self.collection.insert_one(self._document(attempt))
                    return None
                except DuplicateKeyError:
                    kept = await self.collection.find_one({"_id": attempt.record_id})
                if kept is not None:
                    return self._attempt(kept)
        raise RetryableError("the idempotency key is being claimed and released meanwhile; retry")

    async def reclaim(self, expired: Attempt, attempt: Attempt) -> bool:
        with database_errors("claiming an expired idempotency key"):
            result = await self.collection.replace_one(
                {"_id": expired.record_id, "created_at": expired.created_at}, self._document(attempt)
            )
        return result.matched_count == 1

    async def complete(self, attempt: Attempt, answer: Answer) -> None:
        with database_errors("keeping an idempotent answer"):
            await self.collection.update_one(
                self._pending(attempt), {"$set": {"answer": self._sealed(attempt, answer)}}
            )

    async def release(self, attempt: Attempt) -> None:
        with database_errors("releasing an idempotency key"):
            await self.collection.delete_one(self._pending(attempt))

    async def find(self, caller: str, key: str) -> Attempt | None:
        with database_errors("reading an idempotency key"):
            doc = await self.collection.find_one({"_id": record_id_of(caller, key)})
        return None if doc is None else self._attempt(doc)

    @staticmethod
    def _pending(attempt: Attempt) -> Document:
        # Only this claim, still without an answer: never another claim made after it expired.
        return {"_id": attempt.record_id, "created_at": attempt.created_at, "answer": None}

    @staticmethod
    def _document(attempt: Attempt) -> Document:
        return {
            "_id": attempt.record_id,
            "caller": attempt.caller,
            "key": attempt.key,
            "fingerprint": attempt.fingerprint,
            "created_at": attempt.created_at,
            "answer": None,
        }

    def _sealed(self, attempt: Attempt, answer: Answer) -> Document:
        body = base64.b64encode(answer.body).decode()
        return {
            "status": answer.status,
            "content_type": answer.content_type,
            "body_encrypted": self.box.encrypt(body, _binding(attempt)),
        }

    def _attempt(self, doc: Document) -> Attempt:
        attempt = Attempt(doc["caller"], doc["key"], doc["fingerprint"], doc["created_at"])
        sealed = doc.get("answer")
        if sealed is None:
            return attempt
        body = base64.b64decode(self.box.decrypt(sealed["body_encrypted"], _binding(attempt)))
        answer = Answer(sealed["status"], sealed["content_type"], body)
        return Attempt(attempt.caller, attempt.key, attempt.fingerprint, attempt.created_at, answer)


def _binding(attempt: Attempt) -> Binding:
    # Bound to its caller and key: an answer copied onto another caller's record does not open.
    return Binding("idempotency_answer", 0, f"answer/{attempt.record_id}")
