"""Every catalog change and the events announcing it are committed together, then published."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.catalog.domain.audit import AuditEntry
from services.catalog.ports import CatalogRepository, CommandBus, UnitOfWork
from shared.contracts import Envelope

T = TypeVar("T")
SOURCE = "connect/catalog"


@dataclass
class Change(Generic[T]):
    result: T
    events: list[Envelope] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)  # stored in the change's own transaction


async def commit(
    repo: CatalogRepository, bus: CommandBus, work: Callable[[UnitOfWork], Awaitable[Change[T]]]
) -> T:
    """Run `work` in a transaction that also stores its events in the outbox and its audit entries;
    publish the events after."""

    async def transaction(unit: UnitOfWork) -> Change[T]:
        change = await work(unit)
        for event in change.events:
            await unit.announce(event)
        await unit.audit.add(change.audit)  # no change without its entry, no entry without its change
        return change

    change = await repo.atomically(transaction)
    await repo.deliver(bus, change.events)
    return change.result
