"""MongoDB adapter of the scheduler (collections described in `documents`), composed of parts.

Each part owns one concern and shares the collections and the transaction helper (`SchedulerDb`):
`fires` (due slots), `groups` (group runs), `runs` (run now, triggers, run ends), `catalog` (what the
catalog announced), `leases` (partitions among replicas); `outbox` (committed, not yet confirmed) is the
shared one (`shared.outbox.Outbox`). `MongoSchedulerRepository` puts them behind the ports `SchedulerStore`
and `TickerStore`.
"""

from __future__ import annotations

from datetime import timedelta

from services.scheduler.store.base import SchedulerDb
from services.scheduler.store.catalog import CatalogStore
from services.scheduler.store.fires import FireBatch, FireResult, FireStore, Work
from services.scheduler.store.groups import GroupStore
from services.scheduler.store.leases import LeaseStore
from services.scheduler.store.runs import RunStore
from shared.mongo import MongoClient
from shared.outbox import RETENTION


class MongoSchedulerRepository:
    def __init__(
        self,
        client: MongoClient,
        db_name: str,
        *,
        partitions: int = 16,
        lease_seconds: float = 10.0,
        transaction_wait_seconds: float = 10.0,
        outbox_retention: timedelta = RETENTION,
    ) -> None:
        self.db = SchedulerDb(
            client,
            db_name,
            partitions=partitions,
            transaction_wait=timedelta(seconds=transaction_wait_seconds),
            outbox_retention=outbox_retention,
        )
        self.schedules = self.db.schedules
        self.fires = FireStore(self.db)
        self.groups = GroupStore(self.db)
        self.runs = RunStore(self.db, self.groups)
        self.catalog = CatalogStore(self.db)
        self.leases = LeaseStore(self.db, timedelta(seconds=lease_seconds))
        self.outbox = self.db.outbox
        self.ensure_indexes = self.db.ensure_indexes
        # SchedulerStore
        self.allocate_run, self.run_finished = self.runs.allocate_run, self.runs.run_finished
        self.allocate_runs = self.runs.allocate_runs
        self.trigger_owners, self.fire_trigger = self.runs.trigger_owners, self.runs.fire_trigger
        self.ledger_entries = self.runs.ledger_entries
        self.run_group, self.stop_group_run = self.groups.run_group, self.groups.stop_group_run
        self.fire_group, self.group_run = self.groups.fire_group, self.groups.group_run
        self.apply_job, self.apply_group = self.catalog.apply_job, self.catalog.apply_group
        self.delete, self.expired, self.expire_sent = (
            self.catalog.delete,
            self.catalog.expired,
            self.catalog.expire_sent,
        )
        # TickerStore
        self.fire_due, self.fire_one, self.due = self.fires.fire_due, self.fires.fire_one, self.fires.due
        self.partition_work = self.fires.partition_work
        self.heartbeat, self.hold_partitions = self.leases.heartbeat, self.leases.hold_partitions
        self.release_partitions = self.leases.release_partitions


__all__ = ["FireBatch", "FireResult", "MongoSchedulerRepository", "Work"]
