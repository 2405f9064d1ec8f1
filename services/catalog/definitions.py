"""What job and group use cases share: loading one, viewing a page of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from pymongo.asynchronous.client_session import AsyncClientSession as Session

from services.catalog.ports import CatalogRepository, CommandBus, ReadModels
from shared.errors import NotFound

Stored = TypeVar("Stored")
View = TypeVar("View")


class DefinitionService(ABC, Generic[Stored, View]):
    """A catalog collection of user definitions (`jobs`, `groups`) and how its items are shown."""

    collection: str
    kind: str  # "job" or "group": names the item in messages and error fields

    def __init__(
        self, repo: CatalogRepository, reads: ReadModels, bus: CommandBus, *, run_request_timeout: float
    ) -> None:
        self.repo = repo
        self.reads = reads
        self.bus = bus
        self.run_request_timeout = run_request_timeout

    @abstractmethod
    def parse(self, document: dict[str, Any]) -> Stored: ...

    @abstractmethod
    async def views(self, items: list[Stored]) -> list[View]:
        """Views of a page of items, with a fixed number of extra reads (never one per item)."""

    async def load(self, item_id: int, session: Session | None = None) -> Stored:
        doc = await self.repo.find(self.collection, {"_id": item_id}, session)
        if doc is None:
            raise NotFound(f"{self.kind} {item_id} does not exist", field=f"{self.kind}_id")
        return self.parse(doc)

    async def get(self, item_id: int) -> View:
        return (await self.views([await self.load(item_id)]))[0]

    async def page(
        self, filter_: dict[str, Any], *, sort: str, offset: int, limit: int
    ) -> tuple[list[View], int]:
        docs, total = await self.repo.page(self.collection, filter_, sort=sort, offset=offset, limit=limit)
        return await self.views([self.parse(doc) for doc in docs]), total
