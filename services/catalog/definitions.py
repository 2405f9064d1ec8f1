"""What job and group use cases share: loading one, viewing a page of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from services.catalog.ports import CatalogRecords, CatalogRepository, CommandBus, Definitions, ReadModels
from shared.errors import NotFound

Stored = TypeVar("Stored")
View = TypeVar("View")


class DefinitionService(ABC, Generic[Stored, View]):
    """A kind of user definition (jobs, groups) and how its items are shown."""

    kind: str  # "job" or "group": names the item in messages and error fields

    def __init__(
        self, repo: CatalogRepository, reads: ReadModels, bus: CommandBus, *, run_request_timeout: float
    ) -> None:
        self.repo = repo
        self.reads = reads
        self.bus = bus
        self.run_request_timeout = run_request_timeout

    @abstractmethod
    def definitions(self, records: CatalogRecords) -> Definitions[Stored]:
        """This kind's store among `records`."""

    @abstractmethod
    async def views(self, items: list[Stored]) -> list[View]:
        """Views of a page of items, with a fixed number of extra reads (never one per item)."""

    async def load(self, item_id: int, records: CatalogRecords | None = None) -> Stored:
        """The item, read on its own or within a unit of work (`records`)."""
        item = await self.definitions(records or self.repo).get(item_id)
        if item is None:
            raise NotFound(f"{self.kind} {item_id} does not exist", field=f"{self.kind}_id")
        return item

    async def get(self, item_id: int) -> View:
        return (await self.views([await self.load(item_id)]))[0]
