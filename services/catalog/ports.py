from __future__ import annotations

from typing import Any, Protocol

from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts import Envelope, RunJob


class CatalogRepository(Protocol):
    async def next_id(self, kind: str) -> int: ...

    async def insert(self, collection: str, document: dict[str, Any]) -> None: ...

    async def find(self, collection: str, filter_: dict[str, Any]) -> dict[str, Any] | None: ...

    async def page(
        self, collection: str, filter_: dict[str, Any], *, sort: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]: ...

    async def connection(self, connection_id: int) -> ConnectionRecord: ...

    async def table(self, name: str) -> TableRecord: ...


class RunsReadModel(Protocol):
    async def page(
        self, filter_: dict[str, Any], *, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]: ...

    async def get(self, run_id: str) -> dict[str, Any] | None: ...

    async def logs(self, run_id: str, *, after: int, limit: int) -> list[dict[str, Any]]: ...

    async def last_start(self, job_id: int) -> Any: ...


class CommandBus(Protocol):
    async def publish(self, message: Envelope) -> None: ...

    async def request(self, message: RunJob, *, timeout: float) -> Any: ...
