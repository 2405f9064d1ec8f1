"""The documents of the scheduler's database and how they are read.

`schedule_state` (one document per job or group, `_id` "job:12" / "group:3") is the scheduler's
working set *and* the read model the catalog shows (`next_run`, `previous_run`, see
`shared.schedule_state`). Besides those it holds the schedule, the job snapshot or group definition
the catalog last announced, the run counter (`last_run`), the run in flight (`running`), the next
slot to process (`next_slot`, and `due` = the epoch second, rounded up, at which it fires: the slot
plus the owner's spread offset, an indexed integer), the
partition it belongs to and the expiration bookkeeping.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.scheduler.domain.fires import OwnerKind, owner_key
from shared.collections import SchedulerCollections
from shared.contracts import JobSnapshot
from shared.contracts.jobs import OnDemandSchedule, OnEventSchedule, Schedule
from shared.scheduling import SCHEDULE_ADAPTER, has_slots

SCHEDULES = SchedulerCollections.SCHEDULES
LEDGER = SchedulerCollections.LEDGER
OUTBOX = SchedulerCollections.OUTBOX
GROUP_RUNS = SchedulerCollections.GROUP_RUNS
PARTITIONS = SchedulerCollections.PARTITIONS
INSTANCES = SchedulerCollections.INSTANCES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Doc = dict[str, Any]


def epoch_seconds(moment: datetime | None) -> int | None:
    return None if moment is None else math.ceil(moment.timestamp())


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def new_schedule_doc(kind: OwnerKind, owner_id: int, partitions: int) -> Doc:
    """Fields a schedule document starts with (upserts set them on insert)."""
    key = owner_key(kind, owner_id)
    return {
        "kind": kind,
        "owner_id": owner_id,
        "part": partition_of(key, partitions),
        "known": False,
        "deleted": False,
        "active": False,
        "version": 0,
        "last_run": 0,
        "running": None,
        "next_slot": None,
        "due": None,
        "next_run": None,
        "previous_run": None,
        "expires_at": None,
        "expire_sent_at": None,
    }  # no `expires_s` / `trigger`: sparse indexes, written only when set (SPARSE_FIELDS)


# Indexed sparsely: a document without an expiration or a trigger costs those indexes nothing.
SPARSE_FIELDS = ("expires_s", "trigger")


def split_sparse(fields: Doc) -> tuple[Doc, Doc]:
    """(`$set`, `$unset`) for `fields`: a sparse field that is None is removed, not stored as null."""
    unset = {k: "" for k in SPARSE_FIELDS if k in fields and fields[k] is None}
    return {k: v for k, v in fields.items() if k not in unset}, unset


@dataclass(frozen=True)
class ScheduleDoc:
    """A typed view of a `schedule_state` document."""

    raw: Doc

    @property
    def id(self) -> str:
        return str(self.raw["_id"])

    @property
    def kind(self) -> OwnerKind:
        return "group" if self.raw["kind"] == "group" else "job"

    @property
    def owner_id(self) -> int:
        return int(self.raw["owner_id"])

    @property
    def schedule(self) -> Schedule:
        value = self.raw.get("schedule")
        return SCHEDULE_ADAPTER.validate_python(value) if value else OnDemandSchedule()

    @property
    def slot_before_expiry(self) -> bool:
        """A slot before the expiration date is still to fire (the slot decides, not its spread fire
        time: a slot at 01:55 with a 10-minute offset fires at 02:05 although the job expires at 02:00)."""
        return self.next_slot is not None and self.expires_at is not None and self.next_slot < self.expires_at

    @property
    def active(self) -> bool:
        return bool(self.raw.get("active")) and not self.raw.get("deleted")

    @property
    def expires_at(self) -> datetime | None:
        value: datetime | None = self.raw.get("expires_at")
        return value

    @property
    def next_slot(self) -> datetime | None:
        value: datetime | None = self.raw.get("next_slot")
        return value

    @property
    def running(self) -> str | None:
        value: str | None = self.raw.get("running")
        return value

    @property
    def last_run(self) -> int:
        return int(self.raw.get("last_run") or 0)

    @property
    def snapshot(self) -> JobSnapshot | None:
        value = self.raw.get("snapshot")
        return JobSnapshot.model_validate_json(value) if value else None

    @property
    def name(self) -> str:
        return str(self.raw.get("name") or self.raw.get("snapshot_name") or "")

    @property
    def job_ids(self) -> tuple[int, ...]:
        return tuple(int(j) for j in self.raw.get("job_ids") or ())

    @property
    def continue_on_failure(self) -> bool:
        return bool(self.raw.get("continue_on_failure"))


def display_next_run(schedule: Schedule, fires_at: datetime | None, active: bool) -> datetime | None:
    """What the console shows as Next run: when the next slot of an active schedule that has slots
    fires (`fires_at`: the slot plus the owner's spread offset)."""
    return fires_at if active and has_slots(schedule) else None


def trigger_of(schedule: Schedule) -> str | None:
    return schedule.trigger if isinstance(schedule, OnEventSchedule) else None
