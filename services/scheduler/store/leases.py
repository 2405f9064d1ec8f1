"""Partition leases: replicas share the schedules by partition, each taking its fair share.

Every replica heartbeats in `scheduler_instances`; with N live replicas each holds at most
ceil(partitions / N) partitions, renews them while alive and releases extras. A killed replica's
partitions are free again when its lease runs out. Leases only spread the work: exactly-once comes
from the guarded transactions and the ledger's unique index, whoever fires.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from services.scheduler.store.base import SchedulerDb
from services.scheduler.store.documents import EPOCH


class LeaseStore:
    def __init__(self, db: SchedulerDb, lease: timedelta = timedelta(seconds=10)) -> None:
        self.instances = db.instances
        self.partition_leases = db.partition_leases
        self.partitions = db.partitions
        self.lease = lease

    async def heartbeat(self, instance: str, wall: datetime) -> int:
        """Record this replica as alive; the number of live replicas."""
        await self.instances.update_one({"_id": instance}, {"$set": {"seen": wall}}, upsert=True)
        return await self.instances.count_documents({"seen": {"$gt": wall - self.lease}})

    async def hold_partitions(self, instance: str, wall: datetime, live: int) -> list[int]:
        """Renew this replica's partitions, take free ones up to its share, release extras."""
        share = math.ceil(self.partitions / max(live, 1))
        until = wall + self.lease
        leases = await self.partition_leases.find({}).to_list(None)
        mine = sorted(d["_id"] for d in leases if d.get("owner") == instance and d["until"] > wall)
        free = [d for d in leases if d["until"] <= wall or d.get("owner") is None]
        for extra in mine[share:]:
            await self.partition_leases.update_one(
                {"_id": extra, "owner": instance}, {"$set": {"owner": None, "until": EPOCH}}
            )
        held = mine[:share]
        if held:
            await self.partition_leases.update_many(
                {"_id": {"$in": held}, "owner": instance}, {"$set": {"until": until}}
            )
        for doc in free:
            if len(held) >= share:
                break
            taken = await self.partition_leases.update_one(
                {"_id": doc["_id"], "until": doc["until"], "owner": doc.get("owner")},
                {"$set": {"owner": instance, "until": until}},
            )
            if taken.modified_count:
                held.append(doc["_id"])
        return sorted(held)

    async def release_partitions(self, instance: str) -> None:
        await self.partition_leases.update_many(
            {"owner": instance}, {"$set": {"owner": None, "until": EPOCH}}
        )
        await self.instances.delete_one({"_id": instance})
