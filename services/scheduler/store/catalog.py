"""Following the catalog: job snapshots, group definitions, their schedules, activity and deletion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.scheduler.domain.fires import OwnerKind, owner_key
from services.scheduler.store.base import SchedulerDb
from services.scheduler.store.documents import (
    Doc,
    ScheduleDoc,
    display_next_run,
    epoch_seconds,
    new_schedule_doc,
    split_sparse,
    trigger_of,
)
from shared.contracts import JobSnapshot
from shared.contracts.catalog import GroupChangedData
from shared.contracts.jobs import OneTimeSchedule, Schedule
from shared.errors import RetryableError
from shared.scheduling import fire_at, first_pending, spread_offset

ATTEMPTS = 8
# What the ticker reads of an expired schedule (`Ticker.expire`).
EXPIRY_FIELDS = {
    "part": 1,
    "kind": 1,
    "owner_id": 1,
    "running": 1,
    "expire_sent_at": 1,
    "deleted": 1,
    "known": 1,
    "next_slot": 1,
    "expires_at": 1,
}


def first_slot(schedule: Schedule, now: datetime, offset: timedelta = timedelta(0)) -> datetime | None:
    """Where a new or changed schedule starts: its first slot that fires after now (with the spread
    `offset`: a slot just past whose fire time is still to come counts); a one-time instant as is.

    A one-time instant already past still fires once inside the catch-up window (the ledger keeps it
    from firing twice when the same schedule is announced again, or a slot fired under an older
    offset).
    """
    if isinstance(schedule, OneTimeSchedule):
        return schedule.at
    return first_pending(schedule, now, offset)


class CatalogStore:
    """Follows the catalog's announcements into `schedule_state`."""

    def __init__(self, db: SchedulerDb) -> None:
        self.schedules = db.schedules
        self.partitions = db.partitions

    async def apply_job(self, job: JobSnapshot, active: bool, now: datetime) -> None:
        fields: Doc = {
            "snapshot": job.model_dump_json(),
            "snapshot_name": job.name,
            "version": job.version,
        }
        await self._apply("job", job.job_id, job.schedule, job.expires_at, active, now, fields, job.version)

    async def apply_group(self, group: GroupChangedData, now: datetime) -> None:
        fields: Doc = {
            "name": group.name,
            "job_ids": list(group.job_ids),
            "continue_on_failure": group.continue_on_failure,
        }
        await self._apply(
            "group", group.group_id, group.schedule, group.expires_at, group.active, now, fields, None
        )

    async def delete(self, kind: OwnerKind, owner_id: int) -> None:
        base = new_schedule_doc(kind, owner_id, self.partitions)
        gone: Doc = {"deleted": True, "active": False, "next_slot": None, "due": None, "next_run": None}
        unset = {"trigger": "", "expires_s": ""}
        await self.schedules.update_one(
            {"_id": owner_key(kind, owner_id)},
            {"$set": gone, "$unset": unset, "$setOnInsert": {k: v for k, v in base.items() if k not in gone}},
            upsert=True,
        )

    async def expired(self, parts: Sequence[int], now_s: int) -> list[ScheduleDoc]:
        """Every expired, not yet deleted schedule of `parts`, in one query on the `expires_s` index.

        The filter is that field alone (the embedded server scans the collection for one its index does
        not cover); the few expired schedules are sorted out here. Deletion unsets `expires_s`.
        """
        docs = await self.schedules.find({"expires_s": {"$lte": now_s}}, EXPIRY_FIELDS).to_list(None)
        held = set(parts)
        return [
            ScheduleDoc(d) for d in docs if d.get("part") in held and not d.get("deleted") and d.get("known")
        ]

    async def expire_sent(self, key: str, wall: datetime) -> None:
        await self.schedules.update_one({"_id": key}, {"$set": {"expire_sent_at": wall}})

    async def _apply(
        self,
        kind: OwnerKind,
        owner_id: int,
        schedule: Schedule,
        expires_at: datetime | None,
        active: bool,
        now: datetime,
        fields: Doc,
        version: int | None,
    ) -> None:
        key = owner_key(kind, owner_id)
        for _ in range(ATTEMPTS):
            current = await self.schedules.find_one({"_id": key})
            if current is not None and (
                current.get("deleted") or (version is not None and current.get("version", 0) > version)
            ):
                return  # deleted, or an older announcement arriving late
            update, unset = split_sparse(
                _schedule_fields(
                    current, schedule, expires_at, active, now, spread_offset(schedule, kind, owner_id)
                )
                | fields
            )
            if current is None:
                try:
                    await self.schedules.insert_one(
                        new_schedule_doc(kind, owner_id, self.partitions) | update | {"_id": key}
                    )
                    return
                except DuplicateKeyError:
                    continue
            guard = {"_id": key, "next_slot": current.get("next_slot"), "version": current.get("version")}
            change: Doc = {"$set": update} | ({"$unset": unset} if unset else {})
            if (await self.schedules.update_one(guard, change)).matched_count:
                return
        raise RetryableError(f"{key} kept changing while applying a catalog event")


def _schedule_fields(
    current: Doc | None,
    schedule: Schedule,
    expires_at: datetime | None,
    active: bool,
    now: datetime,
    offset: timedelta,
) -> dict[str, Any]:
    encoded = schedule.model_dump(mode="json")
    # Compared as models: a document written before a field was added (`spread_minutes`) still matches.
    same = current is not None and current.get("known") and ScheduleDoc(current).schedule == schedule
    next_slot = ScheduleDoc(current).next_slot if same and current else first_slot(schedule, now, offset)
    fires = None if next_slot is None else fire_at(schedule, next_slot, offset)
    fields: Doc = {
        "known": True,
        "schedule": encoded,
        "active": active,
        "trigger": trigger_of(schedule),
        "next_slot": next_slot,
        "due": epoch_seconds(fires),
        "next_run": display_next_run(schedule, fires, active),
        "expires_at": expires_at,
        "expires_s": epoch_seconds(expires_at),
    }
    if current is None or current.get("expires_at") != expires_at:
        fields["expire_sent_at"] = None
    return fields
