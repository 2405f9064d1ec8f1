"""MongoDB adapter of the scheduler: run counters, running jobs and the outbox, in transactions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from services.scheduler.errors import JobAlreadyRunning
from shared.contracts import RunRequested
from shared.errors import RetryableError
from shared.mongo import MongoClient
from shared.runid import RunId


class MongoSchedulerRepository:
    def __init__(self, client: MongoClient, db_name: str) -> None:
        self.client = client
        self.db = client[db_name]
        self.counters = self.db["run_counters"]
        self.jobs = self.db["job_state"]
        self.outbox = self.db["outbox"]

    async def ensure_indexes(self) -> None:
        await self.outbox.create_index("request_id", unique=True, sparse=True)
        await self.outbox.create_index([("published", 1), ("created_at", 1)])

    async def allocate_run(
        self, *, request_id: str, job_id: int, build: Callable[[RunId], RunRequested]
    ) -> RunRequested:
        async def transaction(session: AsyncClientSession) -> RunRequested:
            earlier = await self.outbox.find_one({"request_id": request_id}, session=session)
            if earlier is not None:  # the same command delivered again: same answer
                return RunRequested.model_validate_json(earlier["message"])
            state = await self.jobs.find_one({"_id": job_id}, session=session)
            if state and state.get("running"):
                raise JobAlreadyRunning(f"job {job_id} is running (run {state['running']})")
            counter = await self.counters.find_one_and_update(
                {"_id": job_id}, {"$inc": {"last": 1}}, upsert=True, return_document=True, session=session
            )
            assert counter is not None
            message = build(RunId(job_id, int(counter["last"])))
            await self.jobs.update_one(
                {"_id": job_id}, {"$set": {"running": message.data.run_id}}, upsert=True, session=session
            )
            await self.outbox.insert_one(_outbox_entry(request_id, message), session=session)
            return message

        try:
            async with self.client.start_session() as session:
                return await session.with_transaction(transaction)
        except (ConnectionFailure, OperationFailure) as exc:
            raise RetryableError(f"database error while allocating a run: {exc}") from exc

    async def mark_published(self, run_id: str) -> None:
        await self.outbox.update_one({"_id": run_id}, {"$set": {"published": True}})

    async def unpublished(self, older_than: datetime) -> list[RunRequested]:
        cursor = self.outbox.find({"published": False, "created_at": {"$lt": older_than}}).limit(500)
        return [RunRequested.model_validate_json(doc["message"]) async for doc in cursor]

    async def release_job(self, job_id: int, run_id: str) -> None:
        try:
            await self.jobs.update_one({"_id": job_id, "running": run_id}, {"$set": {"running": None}})
        except PyMongoError as exc:
            raise RetryableError(f"database error while releasing job {job_id}: {exc}") from exc


def _outbox_entry(request_id: str, message: RunRequested) -> dict[str, Any]:
    return {
        "_id": message.data.run_id,
        "request_id": request_id,
        "job_id": message.data.job.job_id,
        "message": message.model_dump_json(),
        "published": False,
        "created_at": message.time,
    }
