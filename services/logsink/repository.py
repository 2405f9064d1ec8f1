"""MongoDB adapter of the logsink: run records and run logs."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.errors import RetryableError
from shared.mongo import MongoClient


class MongoRunRecords:
    def __init__(self, client: MongoClient, db_name: str) -> None:
        db = client[db_name]
        self.runs = db["runs"]
        self.logs = db["run_logs"]

    async def ensure_indexes(self) -> None:
        await self.runs.create_index([("job_id", 1), ("run_number", -1)])
        await self.runs.create_index([("started_at", -1)])
        await self.logs.create_index([("run_id", 1), ("seq", 1)])

    async def apply(self, filter_: dict[str, Any], update: dict[str, Any], *, upsert: bool) -> None:
        try:
            await self.runs.update_one(filter_, update, upsert=upsert)
        except DuplicateKeyError:
            # The upsert's filter excluded a terminal record that exists: the event is stale, ignore it.
            return
        except PyMongoError as exc:
            raise RetryableError(f"database error while recording a run: {exc}") from exc

    async def add_log(self, document: dict[str, Any]) -> None:
        try:
            await self.logs.insert_one(document)
        except DuplicateKeyError:
            return  # redelivered log line: already stored
        except PyMongoError as exc:
            raise RetryableError(f"database error while storing a log line: {exc}") from exc
