"""Every catalog change and the events announcing it are committed together, then published."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession as Session

from services.catalog.ports import CatalogRepository, CommandBus
from shared.contracts import Envelope

T = TypeVar("T")
SOURCE = "connect/catalog"


@dataclass
class Change(Generic[T]):
    result: T
    events: list[Envelope] = field(default_factory=list)


async def commit(
    repo: CatalogRepository, bus: CommandBus, work: Callable[[Session], Awaitable[Change[T]]]
) -> T:
    """Run `work` in a transaction that also stores its events in the outbox; publish them after."""

    async def transaction(session: Session) -> Change[T]:
        change = await work(session)
        for event in change.events:
            await repo.outbox.add(event, session)
        return change

    change = await repo.atomically(transaction)
    await repo.outbox.deliver(bus, change.events)
    return change.result
