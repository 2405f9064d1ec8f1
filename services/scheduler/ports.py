from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from shared.contracts import RunRequested
from shared.runid import RunId


class RunAllocation(Protocol):
    run_id: RunId
    message: RunRequested


class SchedulerRepository(Protocol):
    async def allocate_run(
        self, *, request_id: str, job_id: int, build: Callable[[RunId], RunRequested]
    ) -> RunRequested:
        """Atomically: refuse overlap, allocate the next run id, store the message in the outbox."""
        ...

    async def mark_published(self, run_id: str) -> None: ...

    async def unpublished(self, older_than: datetime) -> list[RunRequested]: ...

    async def release_job(self, job_id: int, run_id: str) -> None: ...


class EventPublisher(Protocol):
    async def publish(self, message: RunRequested) -> None: ...
