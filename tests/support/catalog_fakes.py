"""In-memory fakes of the catalog's ports (`services.catalog.ports`), for unit tests of its use cases.

`FakeCatalog` is a `CatalogRepository`: its stores keep records in dicts; `atomically` puts every store back
as it was when the work fails, and keeps the events the work announced (`outbox`) only when it succeeds.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from services.catalog.domain import JobQuery, StoredGroup, StoredJob, StoredToken
from services.catalog.domain.audit import AuditEntry, AuditQuery
from services.catalog.ports import CommandBus, UnitOfWork
from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts import Envelope
from shared.errors import Conflict
from shared.schedule_state import ScheduleState

T = TypeVar("T")


class Named(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


class Versioned(Named, Protocol):
    @property
    def version(self) -> int: ...


N = TypeVar("N", bound=Named)
V = TypeVar("V", bound=Versioned)


def page_of(items: Iterable[N], sort: str, offset: int, limit: int) -> tuple[list[N], int]:
    field = sort.lstrip("-")
    ordered = sorted(items, key=lambda item: (getattr(item, field), item.id), reverse=sort.startswith("-"))
    return ordered[offset : offset + limit], len(ordered)


class Numbered(Generic[N]):
    """Records by id, with unique names, numbered from 1."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[int, N] = {}
        self.last_id = 0

    async def new_id(self) -> int:
        self.last_id += 1
        return self.last_id

    async def get(self, item_id: int) -> N | None:
        return self.items.get(item_id)

    async def names(self, ids: Iterable[int]) -> dict[int, str]:
        return {i: self.items[i].name for i in ids if i in self.items}

    async def add(self, record: N) -> None:
        if any(item.name == record.name for item in self.items.values()):
            raise Conflict(f"a {self.kind} named '{record.name}' already exists", field="name")
        self.items[record.id] = record


class Definitions(Numbered[V]):
    async def replace(self, record: V, version: int) -> bool:
        current = self.items.get(record.id)
        if current is None or current.version != version:
            return False
        self.items[record.id] = record
        return True


class FakeJobs(Definitions[StoredJob]):
    def __init__(self) -> None:
        super().__init__("job")

    async def get_many(self, job_ids: Sequence[int]) -> list[StoredJob]:
        return [self.items[i] for i in job_ids if i in self.items]

    async def page(self, query: JobQuery, *, offset: int, limit: int) -> tuple[list[StoredJob], int]:
        def selected(job: StoredJob) -> bool:
            return (
                (not query.name or query.name.lower() in job.name.lower())
                and (not query.job_type or job.job_type == query.job_type)
                and (not query.state or job.active == (query.state == "active"))
                and (not query.group_id or job.group_id == query.group_id)
            )

        return page_of(filter(selected, self.items.values()), query.sort, offset, limit)

    async def remove(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            self.items.pop(job_id, None)

    async def join_group(self, job_ids: Sequence[int], group_id: int) -> None:
        self._set_group([i for i in job_ids if i in self.items], group_id)

    async def leave_group(self, group_id: int) -> None:
        self._set_group([i for i, job in self.items.items() if job.group_id == group_id], None)

    def _set_group(self, job_ids: list[int], group_id: int | None) -> None:
        for job_id in job_ids:
            self.items[job_id] = self.items[job_id].model_copy(update={"group_id": group_id})


class FakeGroups(Definitions[StoredGroup]):
    def __init__(self) -> None:
        super().__init__("group")

    async def containing(self, job_ids: Sequence[int]) -> list[StoredGroup]:
        return [group for group in self.items.values() if set(group.job_ids) & set(job_ids)]

    async def page(self, *, sort: str, offset: int, limit: int) -> tuple[list[StoredGroup], int]:
        return page_of(self.items.values(), sort, offset, limit)

    async def remove(self, group_id: int) -> None:
        self.items.pop(group_id, None)


class FakeConnections(Numbered[ConnectionRecord]):
    def __init__(self) -> None:
        super().__init__("connection")

    async def page(self, *, offset: int, limit: int) -> tuple[list[ConnectionRecord], int]:
        return page_of(self.items.values(), "id", offset, limit)


class FakeTables:
    def __init__(self) -> None:
        self.items: dict[str, TableRecord] = {}

    async def get(self, name: str) -> TableRecord | None:
        return self.items.get(name)

    async def extensions_of(self, list_name: str) -> list[TableRecord]:
        return [table for table in self.items.values() if table.parent_list == list_name]

    async def page(self, *, offset: int, limit: int) -> tuple[list[TableRecord], int]:
        ordered = sorted(self.items.values(), key=lambda table: table.name)
        return ordered[offset : offset + limit], len(ordered)

    async def add(self, record: TableRecord) -> None:
        if record.name in self.items:
            raise Conflict(f"a table named '{record.name}' already exists", field="name")
        self.items[record.name] = record


class FakeTokens:
    def __init__(self) -> None:
        self.items: dict[str, StoredToken] = {}

    async def get(self, token_hash: str) -> StoredToken | None:
        return self.items.get(token_hash)

    async def add(self, token: StoredToken) -> None:
        self.items[token.token_hash] = token

    async def page(self, *, offset: int, limit: int) -> tuple[list[StoredToken], int]:
        items = sorted(self.items.values(), key=lambda t: t.created_at)
        return items[offset : offset + limit], len(items)

    async def revoke(self, token_id: str, when: datetime) -> StoredToken | None:
        found = next((t for t in self.items.values() if t.token_id == token_id), None)
        if found is not None and found.revoked_at is None:
            found = self.items[found.token_hash] = replace(found, revoked_at=when)
        return found

    async def touch(self, token_hash: str, when: datetime) -> None:
        self.items[token_hash] = replace(self.items[token_hash], last_used_at=when)


class FakeAudit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    async def add(self, entries: Sequence[AuditEntry]) -> None:
        self.entries += entries

    async def page(self, query: AuditQuery, *, offset: int, limit: int) -> tuple[list[AuditEntry], int]:
        return self.entries[offset : offset + limit], len(self.entries)


class FakeUnitOfWork:
    def __init__(self, catalog: FakeCatalog) -> None:
        self.jobs, self.groups, self.connections = catalog.jobs, catalog.groups, catalog.connections
        self.tables, self.tokens, self.audit = catalog.tables, catalog.tokens, catalog.audit
        self.announced: list[Envelope] = []

    async def announce(self, event: Envelope) -> None:
        self.announced.append(event)


class FakeCatalog:
    def __init__(self) -> None:
        self.jobs = FakeJobs()
        self.groups = FakeGroups()
        self.connections = FakeConnections()
        self.tables = FakeTables()
        self.tokens = FakeTokens()
        self.audit = FakeAudit()
        self.outbox: list[Envelope] = []  # committed with their changes
        self.delivered: list[Envelope] = []

    async def atomically(self, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        stores = (self.jobs, self.groups, self.connections, self.tables, self.tokens, self.audit)
        before = [copy.deepcopy(vars(store)) for store in stores]
        unit = FakeUnitOfWork(self)
        try:
            result = await work(unit)
        except BaseException:
            for store, state in zip(stores, before, strict=True):
                vars(store).update(state)
            raise
        self.outbox += unit.announced
        return result

    async def deliver(self, bus: CommandBus, events: Sequence[Envelope]) -> None:
        for event in events:
            await bus.publish(event)
            self.delivered.append(event)


class IdleReads:
    """`ports.ReadModels` of a catalog whose jobs have no schedule state and none of which runs."""

    async def schedule_states(self, kind: str, owner_ids: Iterable[int]) -> dict[int, ScheduleState]:
        return {}

    async def run_in_flight(self, job_id: int) -> str | None:
        return None

    async def jobs_in_flight(self, job_ids: Iterable[int]) -> list[int]:
        return []

    async def group_run_in_flight(self, group_id: int) -> str | None:
        return None


class RecordingBus:
    """`ports.CommandBus` that keeps what is published and is asked nothing."""

    def __init__(self) -> None:
        self.published: list[Envelope] = []

    async def publish(self, message: Envelope) -> None:
        self.published.append(message)

    async def request(self, message: Envelope, *, timeout: float) -> Any:
        raise AssertionError(f"unexpected request {message.type}")
