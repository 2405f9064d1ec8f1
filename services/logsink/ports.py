from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from services.logsink.domain import Keyed, RunWrites
from shared.catalog_records import NotificationChannelRecord, NotificationRule
from shared.contracts.runs import RunStatus

Document = dict[str, Any]


@dataclass
class Written:
    """What a written batch held already: log lines stored before, and events (by kind) whose change
    the records refused (a redelivery, or a late event a later record no longer takes)."""

    duplicate_lines: int = 0
    refused: Counter[str] = field(default_factory=Counter)


class RunRecords(Protocol):
    async def write(
        self,
        *,
        logs: list[dict[str, Any]],
        runs: list[RunWrites],
        group_runs: list[Keyed],
    ) -> Written:
        """Write a batch durably."""
        ...


class IngestMetrics(Protocol):
    def recorded(self, kind: str, count: int) -> None: ...

    def duplicates(self, kind: str, count: int) -> None: ...

    def batch_written(self, seconds: float) -> None: ...


class DeliveryMetrics(Protocol):
    def consumed(self, handler: str, count: int, status: str) -> None:
        """Messages received from `handler` (exchange.routing_key) and how they ended (acked, nacked, ...)."""
        ...


# --- notifications ---


class NotificationReads(Protocol):
    """What making notifications reads (the catalog's rules and channels, the run records) and writes."""

    async def rules(self, owner_kind: str, owner_ids: Sequence[int]) -> dict[int, list[NotificationRule]]: ...

    async def channels_by_id(self, ids: Sequence[int]) -> dict[int, NotificationChannelRecord]: ...

    async def run_records(self, run_ids: Sequence[str]) -> dict[str, Document]: ...

    async def group_run_records(self, ids: Sequence[str]) -> dict[str, Document]: ...

    async def previous_status(self, owner_kind: str, owner_id: int, run_number: int) -> RunStatus | None: ...

    async def insert(self, documents: list[Document]) -> int: ...


class Outbox(Protocol):
    """The sender's view of the notifications: claim one with a lease, record what its send did."""

    async def claim(self, now: datetime, lease: timedelta) -> Document | None: ...

    async def channel(self, channel_id: int) -> NotificationChannelRecord | None: ...

    async def mark_sent(self, notification_id: str, attempts: int, now: datetime) -> None: ...

    async def retry_later(self, notification_id: str, attempts: int, at: datetime, error: str) -> None: ...

    async def mark_failed(self, notification_id: str, attempts: int, error: str) -> None: ...


class NotificationMetrics(Protocol):
    def notification(self, channel_kind: str, status: str) -> None: ...
