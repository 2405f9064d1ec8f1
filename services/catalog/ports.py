from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession as Session

from services.catalog.schemas import ConnectionTest, HostKeyView
from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts import Envelope
from shared.outbox import Outbox
from shared.schedule_state import ScheduleState
from shared.secrets import SecretBox

T = TypeVar("T")


class CatalogRepository(Protocol):
    outbox: Outbox

    async def atomically(self, work: Callable[[Session], Awaitable[T]]) -> T: ...

    async def next_id(self, kind: str, session: Session | None = None) -> int: ...

    async def insert(
        self, collection: str, document: dict[str, Any], session: Session | None = None
    ) -> None: ...

    async def find(
        self, collection: str, filter_: dict[str, Any], session: Session | None = None
    ) -> dict[str, Any] | None: ...

    async def find_all(
        self, collection: str, filter_: dict[str, Any], session: Session | None = None
    ) -> list[dict[str, Any]]: ...

    async def update(
        self, collection: str, filter_: dict[str, Any], update: dict[str, Any], session: Session | None = None
    ) -> int: ...

    async def delete(
        self, collection: str, filter_: dict[str, Any], session: Session | None = None
    ) -> int: ...

    async def page(
        self, collection: str, filter_: dict[str, Any], *, sort: str, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]: ...

    async def connection(self, connection_id: int) -> ConnectionRecord: ...

    async def table(self, name: str, field: str = "table") -> TableRecord: ...


class ReadModels(Protocol):
    async def schedule_states(self, kind: str, owner_ids: Iterable[int]) -> dict[int, ScheduleState]: ...

    async def run_in_flight(self, job_id: int) -> str | None: ...

    async def jobs_in_flight(self, job_ids: Iterable[int]) -> list[int]: ...

    async def group_run_in_flight(self, group_id: int) -> str | None: ...


class CommandBus(Protocol):
    async def publish(self, message: Envelope) -> None: ...

    async def request(self, message: Envelope, *, timeout: float) -> Any: ...


class AudienceSchema(Protocol):
    async def create(self, table: TableRecord) -> None:
        """Create a new table's collection and its unique indexes in the audience database."""
        ...


class SftpProbe(Protocol):
    async def host_key(self, host: str, port: int) -> HostKeyView: ...

    async def test(self, connection: ConnectionRecord, secret_box: SecretBox) -> ConnectionTest: ...
