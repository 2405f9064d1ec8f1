from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from services.logsink.domain import Update


class RunRecords(Protocol):
    async def already_applied(self, event_ids: Sequence[str]) -> set[str]: ...

    async def write(
        self,
        *,
        logs: list[dict[str, Any]],
        runs: list[Update],
        group_runs: list[Update],
        applied_ids: list[str],
        progress: list[dict[str, Any]],
    ) -> int:
        """Write a batch durably; returns how many of the `logs` lines were stored already."""
        ...


class IngestMetrics(Protocol):
    def recorded(self, kind: str, count: int) -> None: ...

    def duplicates(self, kind: str, count: int) -> None: ...

    def batch_written(self, seconds: float) -> None: ...


class DeliveryMetrics(Protocol):
    def consumed(self, handler: str, count: int, status: str) -> None:
        """Messages received from `handler` (exchange.routing_key) and how they ended (acked, nacked, ...)."""
        ...
