"""Every catalog change and the events announcing it are committed together, then published."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.catalog.ports import CatalogRepository, CommandBus, UnitOfWork
from shared.contracts import Envelope

T = TypeVar("T")
SOURCE = "connect/catalog"


@dataclass
class Change(Generic[T]):
    result: T
    events: list[Envelope] = field(default_factory=list)


async def commit(
    repo: CatalogRepository, bus: CommandBus, work: Callable[[UnitOfWork], Awaitable[Change[T]]]
) -> T:
    """Run `work` in a transaction that also stores its events in the outbox; publish them after."""

    async def transaction(unit: UnitOfWork) -> Change[T]:
        change = await work(unit)
        for event in change.events:
            await unit.announce(event)
        return change

    change = await repo.atomically(transaction)
    await repo.deliver(bus, change.events)
    return change.result
