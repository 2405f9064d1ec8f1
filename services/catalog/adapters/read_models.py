"""What the catalog reads from other services' collections (never writes): schedule state, runs in flight."""

from __future__ import annotations

from collections.abc import Iterable

from pymongo import DESCENDING

from shared.collections import LogsinkCollections, SchedulerCollections
from shared.mongo import MongoClient
from shared.run_records import IN_FLIGHT, GroupRunField, RunField
from shared.schedule_state import ScheduleState, state_id

QUEUED_OR_RUNNING = {"$in": list(IN_FLIGHT)}


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
            {RunField.JOB_ID: job_id, RunField.STATUS: QUEUED_OR_RUNNING},
            sort=[(RunField.REQUESTED_AT, DESCENDING)],
        )
        return str(doc[RunField.ID]) if doc else None

    async def jobs_in_flight(self, job_ids: Iterable[int]) -> list[int]:
        cursor = self.runs.find(
            {RunField.JOB_ID: {"$in": list(job_ids)}, RunField.STATUS: QUEUED_OR_RUNNING},
            {RunField.JOB_ID: 1},
        )
        return sorted({int(doc[RunField.JOB_ID]) async for doc in cursor})

    async def group_run_in_flight(self, group_id: int) -> str | None:
        doc = await self.group_runs.find_one(
            {GroupRunField.GROUP_ID: group_id, GroupRunField.STATUS: QUEUED_OR_RUNNING},
            sort=[(GroupRunField.STARTED_AT, DESCENDING)],
        )
        return str(doc[GroupRunField.ID]) if doc else None
