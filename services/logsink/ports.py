from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.logsink.domain import Keyed, RunWrites


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
