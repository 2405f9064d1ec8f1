"""What the executor's use cases need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts import Envelope, RunRequested


@dataclass(frozen=True)
class Claim:
    run_id: str
    attempt: int


class LeaseStore(Protocol):
    async def claim(self, request: RunRequested, owner: str) -> Claim | None:
        """Take the run unless another live executor holds it or it is finished."""
        ...

    async def renew(self, run_id: str, owner: str) -> bool: ...

    async def next_log_seq(self, run_id: str) -> int: ...

    async def finish(self, run_id: str, owner: str, finished_message: str) -> None: ...

    async def mark_reported(self, run_id: str) -> None: ...

    async def expired(self, limit: int) -> list[RunRequested]: ...

    async def unreported(self, older_than_seconds: float) -> list[str]: ...


class CatalogReader(Protocol):
    async def connection(self, connection_id: int) -> ConnectionRecord: ...

    async def table(self, name: str) -> TableRecord: ...


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    updated: int


class TableWriter(Protocol):
    async def prepare(self, table: TableRecord) -> None: ...

    async def merge(self, table: TableRecord, rows: Sequence[dict[str, Any]]) -> WriteResult: ...


class EventPublisher(Protocol):
    async def publish(self, message: Envelope) -> None: ...
