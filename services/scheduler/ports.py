"""What the scheduler's use cases and its ticker need from the world, in the domain's words.

`SchedulerStore` is what `SchedulerService` needs, `TickerStore` what the `Ticker` needs; the MongoDB
adapter (`services.scheduler.store.MongoSchedulerRepository`) implements both by composing its parts
(fires, groups, runs, catalog, leases, outbox), and the unit tests' in-memory store implements
`SchedulerStore`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from shared.contracts import Envelope, JobSnapshot, RunRequested
from shared.contracts.catalog import GroupChangedData
from shared.contracts.runs import RunStatus, Trigger
from shared.errors import Conflict
from shared.runid import RunId

if TYPE_CHECKING:
    from services.scheduler.domain import SlotPlan
    from services.scheduler.domain.fires import OwnerKind
    from services.scheduler.store.documents import ScheduleDoc
    from services.scheduler.store.fires import FireBatch, FireResult, PartitionWork
    from services.scheduler.store.runs import RunRequest
    from shared.outbox import OutboxDelivery

    Planner = Callable[[ScheduleDoc], SlotPlan]


class EventPublisher(Protocol):
    async def publish(self, message: Envelope) -> None: ...


class RunAllocations(Protocol):
    """Runs born outside a schedule's slots (run now, trigger events), and runs ending."""

    async def allocate_run(
        self, *, request_id: str, job_id: int, build: Callable[[RunId], RunRequested], now: datetime,
        wall: datetime, expires_at: datetime | None = None, still_wanted: Callable[[], bool] = ...,
    ) -> tuple[RunRequested, str]: ...  # fmt: skip

    async def allocate_runs(
        self, requests: Sequence[RunRequest], wall: datetime
    ) -> list[tuple[RunRequested, str] | Conflict]: ...

    async def run_finished(
        self, job_id: int, run_id: str, status: RunStatus, now: datetime, wall: datetime
    ) -> FireResult: ...

    async def trigger_owners(self, name: str) -> list[ScheduleDoc]: ...

    async def fire_trigger(
        self, key: str, slot: str, params: dict[str, str], now: datetime, wall: datetime
    ) -> FireResult: ...


class GroupRuns(Protocol):
    async def run_group(
        self, *, request_id: str, group_id: int, requested_by: str, trigger: Trigger, now: datetime,
        wall: datetime, still_wanted: Callable[[], bool] = ...,
    ) -> tuple[str, str | None, list[Envelope]]: ...  # fmt: skip

    async def stop_group_run(
        self, group_run_id: str, requested_by: str, now: datetime, wall: datetime
    ) -> FireResult: ...

    async def fire_group(self, key: str, planner: Planner, now: datetime, wall: datetime) -> FireResult: ...


class CatalogFollower(Protocol):
    """The catalog's jobs and groups as the scheduler last heard of them."""

    async def apply_job(self, job: JobSnapshot, active: bool, now: datetime) -> None: ...

    async def apply_group(self, group: GroupChangedData, now: datetime) -> None: ...

    async def delete(self, kind: OwnerKind, owner_id: int) -> None: ...

    async def expired(self, parts: Sequence[int], now_s: int) -> list[ScheduleDoc]: ...

    async def expire_sent(self, key: str, wall: datetime) -> None: ...


class Outbox(Protocol):
    """Messages committed with a change and not yet confirmed by the broker (`shared.outbox`): published
    after the commit, relayed after a crash or a refusal, pruned once published."""

    @property
    def outbox(self) -> OutboxDelivery: ...


class SlotFiring(Protocol):
    async def partition_work(self, parts: Sequence[int], now_s: int, limit: int) -> PartitionWork: ...

    async def fire_due(
        self, part: int, cutoff: int, limit: int, planner: Planner, now: datetime, wall: datetime
    ) -> FireBatch: ...

    async def fire_one(self, key: str, planner: Planner, now: datetime, wall: datetime) -> FireResult: ...


class PartitionLeases(Protocol):
    async def heartbeat(self, instance: str, wall: datetime) -> int: ...

    async def hold_partitions(self, instance: str, wall: datetime, live: int) -> list[int]: ...

    async def release_partitions(self, instance: str) -> None: ...


class SchedulerStore(RunAllocations, GroupRuns, CatalogFollower, Outbox, Protocol):
    """What `SchedulerService` needs."""


class TickerStore(SlotFiring, GroupRuns, CatalogFollower, PartitionLeases, Protocol):
    """What the `Ticker` needs."""
