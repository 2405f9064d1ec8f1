"""MongoDB adapter of the scheduler (collections described in `documents`)."""

from __future__ import annotations

from datetime import timedelta

from services.scheduler.store.catalog import CatalogStore
from services.scheduler.store.fires import FireResult, Work
from services.scheduler.store.leases import LeaseStore
from services.scheduler.store.runs import RunStore
from shared.mongo import MongoClient


class MongoSchedulerRepository(RunStore, CatalogStore, LeaseStore):
    def __init__(
        self,
        client: MongoClient,
        db_name: str,
        *,
        partitions: int = 16,
        lease_seconds: float = 10.0,
        transaction_wait_seconds: float = 10.0,
    ) -> None:
        super().__init__(client, db_name, partitions=partitions)
        self.lease = timedelta(seconds=lease_seconds)
        self.transaction_wait = timedelta(seconds=transaction_wait_seconds)


__all__ = ["FireResult", "MongoSchedulerRepository", "Work"]
