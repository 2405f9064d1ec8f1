"""What the catalog reads from other services' collections (never writes): schedule state, runs in flight."""

from __future__ import annotations

from collections.abc import Iterable

from pymongo import DESCENDING

from shared.collections import LogsinkCollections, SchedulerCollections
from shared.mongo import MongoClient
from shared.schedule_state import ScheduleState, state_id

IN_FLIGHT = ["queued", "running"]


class MongoReadModels:
    def __init__(self, client: MongoClient, scheduler_db: str, logsink_db: str) -> None:
        self.schedule_state = client[scheduler_db][SchedulerCollections.SCHEDULES]
        self.runs = client[logsink_db][LogsinkCollections.RUNS]
        self.group_runs = client[logsink_db][LogsinkCollections.GROUP_RUNS]

    async def schedule_states(self, kind: str, owner_ids: Iterable[int]) -> dict[int, ScheduleState]:
        ids = [state_id(kind, owner_id) for owner_id in owner_ids]  # type: ignore[arg-type]
        cursor = self.schedule_state.find({"_id": {"$in": ids}})
        states = [ScheduleState.model_validate(doc) async for doc in cursor]
        return {state.owner_id: state for state in states}

    async def run_in_flight(self, job_id: int) -> str | None:
        """The job's run that is queued or running, if any (from the logsink's records)."""
        doc = await self.runs.find_one(
            {"job_id": job_id, "status": {"$in": IN_FLIGHT}}, sort=[("requested_at", DESCENDING)]
        )
        return str(doc["_id"]) if doc else None

    async def jobs_in_flight(self, job_ids: Iterable[int]) -> list[int]:
        cursor = self.runs.find(
            {"job_id": {"$in": list(job_ids)}, "status": {"$in": IN_FLIGHT}}, {"job_id": 1}
        )
        return sorted({int(doc["job_id"]) async for doc in cursor})

    async def group_run_in_flight(self, group_id: int) -> str | None:
        doc = await self.group_runs.find_one(
            {"group_id": group_id, "status": {"$in": IN_FLIGHT}}, sort=[("started_at", DESCENDING)]
        )
        return str(doc["_id"]) if doc else None
