"""Which due slots fire, which are skipped and why (the fire ledger's outcomes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from shared.contracts.jobs import Schedule, is_expired
from shared.scheduling import fire_at, next_fire

# Slots enumerated per schedule and pass; a longer backlog (all missed anyway) continues next pass.
MAX_SLOTS_PER_PASS = 5000

OwnerKind = Literal["job", "group"]


class Outcome(StrEnum):
    REQUESTED = "requested"
    OVERLAP = "overlap"  # the job (or group) is still running
    INACTIVE = "inactive"
    EXPIRED = "expired"
    MISSED = "missed"  # outside the catch-up window

    @property
    def skipped(self) -> bool:
        return self is not Outcome.REQUESTED


@dataclass(frozen=True)
class CatchUp:
    """After downtime: the `slots` most recent missed slots still fire (if not older than `max_age`).

    `grace`: how long a live scheduler can take to fire a slot when a replica dies (its partition
    lease running out, then the server reaping the dead replica's open transaction). Slots that
    came due within `grace` are not downtime: they always fire, so a replica's death never pushes
    a slot out of the window. The window of `slots` is counted from `now - grace`.
    """

    slots: int = 1
    max_age: timedelta | None = None
    grace: timedelta = timedelta(0)


@dataclass(frozen=True)
class SlotPlan:
    candidates: tuple[datetime, ...] = ()  # due slots to fire (subject to overlap, activity, expiry)
    missed: tuple[datetime, ...] = ()  # due slots outside the catch-up window
    next_slot: datetime | None = None  # the first slot not yet due
    next_due: datetime | None = None  # when `next_slot` fires: the slot plus the spread offset
    fire_times: Mapping[datetime, datetime] = field(default_factory=dict)  # due slot → its fire time

    def fire_time(self, slot: datetime) -> datetime:
        return self.fire_times.get(slot, slot)

    @property
    def all_due(self) -> tuple[datetime, ...]:
        return tuple(sorted((*self.missed, *self.candidates)))


def plan_slots(
    schedule: Schedule,
    next_slot: datetime | None,
    now: datetime,
    catch_up: CatchUp = CatchUp(),
    offset: timedelta = timedelta(0),
) -> SlotPlan:
    """Split the slots due by `now` (from `next_slot` on) into candidates and missed ones.

    A slot is due once its fire time (`fire_at`: the slot plus the owner's spread `offset`) has come;
    the catch-up window, grace and age limit are counted on fire times too. Slots stay the identity.
    """
    due: list[tuple[datetime, datetime]] = []  # (slot, fire time)
    slot = next_slot
    at = None if slot is None else fire_at(schedule, slot, offset)
    while slot is not None and at is not None and at <= now and len(due) < MAX_SLOTS_PER_PASS:
        due.append((slot, at))
        slot = next_fire(schedule, slot)
        at = None if slot is None else fire_at(schedule, slot, offset)
    if at is not None and at <= now:  # an enormous backlog: this part is all missed
        return SlotPlan(missed=tuple(s for s, _ in due), next_slot=slot, next_due=at, fire_times=dict(due))
    late = [s for s, t in due if now - t <= catch_up.grace]  # delayed by a take-over, not by downtime
    before = [s for s, _ in due[: len(due) - len(late)]]
    keep = (before[len(before) - catch_up.slots :] if catch_up.slots else []) + late
    if catch_up.max_age is not None:
        fired_at = dict(due)
        keep = [s for s in keep if now - fired_at[s] <= catch_up.max_age]
    missed = [s for s, _ in due if s not in keep]
    return SlotPlan(
        candidates=tuple(keep), missed=tuple(missed), next_slot=slot, next_due=at, fire_times=dict(due)
    )


@dataclass(frozen=True)
class MissedRange:
    """The missed slots of one pass, recorded as ONE ledger entry: `first` (its slot) to `last`.

    Missed slots are always a run of consecutive slots of the schedule (everything due before the
    catch-up window), so (first, last) names exactly them; `count` is how many (for the metric).
    """

    first: datetime
    last: datetime
    count: int


def missed_range(missed: Sequence[datetime]) -> MissedRange | None:
    """One ledger entry for a pass's missed slots, or None when none were missed."""
    if not missed:
        return None
    ordered = sorted(missed)
    return MissedRange(ordered[0], ordered[-1], len(ordered))


def unrecorded(
    due: Sequence[datetime], recorded: Iterable[tuple[datetime, datetime]]
) -> tuple[datetime, ...]:
    """The due slots no ledger entry covers; an entry covers its slot up to its `until` (inclusive)."""
    spans = list(recorded)
    return tuple(s for s in due if not any(first <= s <= last for first, last in spans))


def decide(slot: datetime, *, active: bool, expires_at: datetime | None, running: bool) -> Outcome:
    """What happens to a slot that is due and inside the catch-up window."""
    if is_expired(expires_at, slot):
        return Outcome.EXPIRED
    if not active:
        return Outcome.INACTIVE
    if running:
        return Outcome.OVERLAP
    return Outcome.REQUESTED


def owner_key(kind: OwnerKind, owner_id: int) -> str:
    """The ledger's owner and the schedule document's id: "job:12", "group:3"."""
    return f"{kind}:{owner_id}"


def kind_of(key: str) -> OwnerKind:
    """The kind of owner a key ("job:12", "group:3") names."""
    return "group" if key.startswith("group:") else "job"


def trigger_slot(name: str, idempotency_key: str) -> str:
    """A trigger event's "slot": one fire per owner, trigger and idempotency key."""
    return f"trigger:{name}:{idempotency_key}"


def ledger_key(owner: str, slot: datetime | str) -> str:
    return f"{owner}|{slot.isoformat() if isinstance(slot, datetime) else slot}"
