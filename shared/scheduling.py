"""Schedule math, shared by the scheduler (fires) and the catalog (validation, preview). No I/O.

Daylight-saving policy (docs/scheduling.md):

* Wall-clock rules (cron, daily, weekly, monthly) are evaluated in the schedule's IANA zone.
* A wall time inside the spring-forward gap (it does not exist that day) fires once, at the first
  valid instant after the gap (the transition itself, e.g. 02:30 → 03:00 in New York). Several wall
  slots inside one gap collapse into that single fire.
* A wall time inside the fall-back repeat (it occurs twice) fires once, at its first occurrence.
* Slots are whole milliseconds (MongoDB's precision): a one-time instant is taken to the millisecond.
* "Every N minutes" is elapsed time, not wall time: slots are the instants at whole multiples of N
  minutes since 1970-01-01T00:00Z, so daylight saving never shortens or stretches the interval.

Spread start times (`spread_minutes`, recurring schedules): the slot stays the run's identity; the
owner (job or group) fires at `fire_at(slot)` = slot + its stable offset (`spread_offset`, whole
seconds from a SHA-256 of "kind:id"), never at or after the next slot (see `fire_at`).
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter
from pydantic import BaseModel, ConfigDict, TypeAdapter

from shared.contracts.jobs import (
    CronRule,
    DailyRule,
    EveryRule,
    MonthlyRule,
    OneTimeSchedule,
    RecurrenceRule,
    RecurringSchedule,
    Schedule,
    WeeklyRule,
)
from shared.errors import ValidationFailed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_PREVIEW = 100
_SEARCH_DAYS = 366 * 5  # daily/weekly/monthly rules always fire within this horizon
_CRON_SEARCH = 4 * 60  # wall candidates tried; more than any DST gap holds

Adjustment = Literal["gap", "repeat"]
SCHEDULE_ADAPTER: TypeAdapter[Schedule] = TypeAdapter(Schedule)


class FirePreview(BaseModel):
    """One upcoming fire: in the schedule's zone and in UTC, flagged when daylight saving moves it."""

    model_config = ConfigDict(frozen=True)

    local: datetime
    utc: datetime  # when it fires: the slot plus the owner's spread offset
    dst_change: bool = False
    note: str | None = None
    slot: datetime | None = None  # the nominal slot (UTC), the run's identity


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(f"unknown time zone '{name}'", field="schedule.timezone") from exc


def validate_schedule(schedule: Schedule) -> None:
    """Raise `ValidationFailed` (with `field`) when a schedule can never be evaluated."""
    if not isinstance(schedule, RecurringSchedule):
        return
    zone(schedule.timezone)
    rule = schedule.rule
    if isinstance(rule, CronRule):
        _validate_cron(rule.expression)
    _validate_spread(schedule)


def _validate_spread(schedule: RecurringSchedule) -> None:
    """The spread window must be shorter than the schedule's interval, so an offset never reaches
    the next slot (the nominal interval; `fire_at` covers a daylight-saving change that shortens it)."""
    window = schedule.spread_minutes
    if not window:
        return
    interval = shortest_interval(schedule.rule, window)
    if window >= interval:
        raise ValidationFailed(
            f"spread_minutes ({window}) must be shorter than the schedule's interval ({interval} minutes)",
            field="schedule.spread_minutes",
        )


DAY_MINUTES = 24 * 60


def shortest_interval(rule: RecurrenceRule, window: int = 60) -> int:
    """The shortest nominal interval between two slots, in minutes (wall time, daylight saving aside).

    Daily, weekly and monthly rules are a day or more apart (`DAY_MINUTES` is answered). For cron it
    is exact when it is at most `window` (only then does it decide anything); longer answers may be
    a lower bound. Every N minutes: N.
    """
    if isinstance(rule, EveryRule):
        return rule.minutes
    if not isinstance(rule, CronRule):
        return DAY_MINUTES
    minutes, hours = croniter(rule.expression).expanded[:2]
    day = sorted({h * 60 + m for h in _all(hours, 24) for m in _all(minutes, 60)})
    within = min((b - a for a, b in pairwise(day)), default=DAY_MINUTES)
    across = DAY_MINUTES - day[-1] + day[0]  # last slot of a day to the first of the next
    if across < within and across <= window and not _fires_on_consecutive_days(rule.expression):
        across = DAY_MINUTES
    return min(within, across)


def _all(values: list[int | str], size: int) -> list[int]:
    return list(range(size)) if values == ["*"] else [int(v) for v in values]


def _fires_on_consecutive_days(expression: str) -> bool:
    """Whether the cron's day fields ever match two days in a row (looked for over 8 years)."""
    days = " ".join(expression.split()[2:])
    it = croniter(f"0 0 {days}", datetime(2000, 1, 1))
    previous: datetime | None = None
    for _ in range(366 * 8):
        day = it.get_next(datetime)
        if previous is not None and day - previous == timedelta(days=1):
            return True
        if day.year >= 2008:
            return False
        previous = day
    return False


def spread_offset(schedule: Schedule, kind: str, owner_id: int) -> timedelta:
    """The owner's stable offset inside its spread window: whole seconds in [0, spread_minutes·60).

    A SHA-256 of "kind:id" (not Python's per-process `hash()`), so every process, replica and the
    catalog's preview compute the same offset. Seconds: the scheduler ticks every second.
    """
    window = schedule.spread_minutes * 60 if isinstance(schedule, RecurringSchedule) else 0
    if window <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{kind}:{owner_id}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % window)


def fire_at(schedule: Schedule, slot: datetime, offset: timedelta) -> datetime:
    """When `slot` fires: slot + offset, but always before the next slot.

    Validation keeps the window shorter than the nominal interval; a daylight-saving change can still
    bring two wall slots closer (`30 1,2 * * *` in New York on the spring-forward day: 01:30 EST and
    03:00 EDT are 30 minutes apart), and then the fire moves to one second before the next slot.
    """
    if not offset:
        return slot
    shifted = slot + offset
    following = next_fire(schedule, slot)
    if following is not None and shifted >= following:
        return max(slot, following - timedelta(seconds=1))
    return shifted


def first_pending(schedule: Schedule, after: datetime, offset: timedelta) -> datetime | None:
    """The first slot whose fire time (`fire_at`) is strictly after `after`."""
    after = _utc(after)
    slot = next_fire(schedule, after - offset)  # earlier slots fire at or before `after`
    while slot is not None and fire_at(schedule, slot, offset) <= after:
        slot = next_fire(schedule, slot)
    return slot


def _validate_cron(expression: str) -> None:
    field = "schedule.rule.expression"
    if len(expression.split()) != 5:
        raise ValidationFailed(
            f"cron expression '{expression}' must have 5 fields (minute hour day month weekday)", field=field
        )
    if not croniter.is_valid(expression):
        raise ValidationFailed(f"'{expression}' is not a valid cron expression", field=field)
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterBadDateError, CroniterError) as exc:
        raise ValidationFailed(f"cron expression '{expression}' never fires", field=field) from exc


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (UTC), or None when the schedule has no further slot."""
    found = _next(schedule, _utc(after))
    return found[0] if found else None


def _next(schedule: Schedule, after: datetime) -> tuple[datetime, Adjustment | None] | None:
    if isinstance(schedule, OneTimeSchedule):
        at = _ms(_utc(schedule.at))
        return (at, None) if at > after else None
    if not isinstance(schedule, RecurringSchedule):
        return None  # on-demand and on-event schedules have no slots
    rule = schedule.rule
    if isinstance(rule, EveryRule):
        step = rule.minutes * 60
        elapsed = int((after - EPOCH).total_seconds()) // step + 1
        return EPOCH + timedelta(seconds=elapsed * step), None
    tz = zone(schedule.timezone)
    wall = after.astimezone(tz).replace(tzinfo=None)
    for candidate in _wall_candidates(rule, wall):
        instant, adjustment = resolve_wall_time(candidate, tz)
        if _ms(instant) > after:
            return _ms(instant), adjustment
    return None


def _wall_candidates(
    rule: CronRule | DailyRule | WeeklyRule | MonthlyRule, wall: datetime
) -> Iterator[datetime]:
    """Wall times after `wall`, in order (resolving them under the DST policy never reorders them)."""
    if isinstance(rule, CronRule):
        try:
            it = croniter(rule.expression, wall)
            for _ in range(_CRON_SEARCH):  # a whole DST gap of minutes collapses into one fire
                yield it.get_next(datetime)
        except (CroniterBadDateError, CroniterBadCronError, CroniterError):
            return
        return
    at = rule.at.replace(tzinfo=None)
    for offset in range(_SEARCH_DAYS):
        day = wall.date() + timedelta(days=offset)
        candidate = datetime.combine(day, at)
        if candidate > wall and _matches(rule, day):
            yield candidate


def _matches(rule: DailyRule | WeeklyRule | MonthlyRule, day: date) -> bool:
    if isinstance(rule, DailyRule):
        return True
    if isinstance(rule, WeeklyRule):
        return WEEKDAYS[day.weekday()] in rule.days
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == min(rule.day, last)


def resolve_wall_time(wall: datetime, tz: ZoneInfo) -> tuple[datetime, Adjustment | None]:
    """The UTC instant a wall time fires at under the DST policy, and which adjustment applied."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC), None
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first.astimezone(UTC), "repeat"  # occurs twice: the first occurrence
    # Inside the gap: fold=1 reads it with the offset after the change (an instant before the
    # transition), fold=0 with the offset before (an instant after it); find the transition between.
    return _transition(second.astimezone(UTC), first.astimezone(UTC), tz), "gap"


def _transition(low: datetime, high: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in (low, high] whose UTC offset is the offset at `high` (1 s resolution)."""
    target = high.astimezone(tz).utcoffset()
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def preview(
    schedule: Schedule, now: datetime, count: int, offset: timedelta = timedelta(0)
) -> list[FirePreview]:
    """The next `count` fires after `now` (at most `MAX_PREVIEW`), flagged at daylight-saving changes.

    With a spread `offset` each fire is `fire_at(slot)` (what the scheduler does) and `now` is compared
    with fire times, so a page that starts at the previous page's last fire neither skips nor repeats.
    """
    tz = zone(schedule.timezone) if isinstance(schedule, RecurringSchedule) else None
    result: list[FirePreview] = []
    start = first_pending(schedule, now, offset) if offset else None
    after = start - timedelta(milliseconds=1) if start else _utc(now)
    while len(result) < min(count, MAX_PREVIEW):
        found = _next(schedule, after)
        if found is None:
            break
        slot, adjustment = found
        instant = fire_at(schedule, slot, offset)
        local = instant.astimezone(tz) if tz else _as_given(schedule, instant)
        note = _note(adjustment, slot.astimezone(tz) if tz else slot)
        fire = FirePreview(local=local, utc=instant, dst_change=adjustment is not None, note=note, slot=slot)
        result.append(fire)
        after = slot
    return result


def _as_given(schedule: Schedule, instant: datetime) -> datetime:
    if isinstance(schedule, OneTimeSchedule) and schedule.at.tzinfo is not None:
        return instant.astimezone(schedule.at.tzinfo)
    return instant


def _note(adjustment: Adjustment | None, local: datetime) -> str | None:
    if adjustment == "gap":
        return f"clocks spring forward on {local.date()}: slots inside the gap run once at {local:%H:%M:%S}"
    if adjustment == "repeat":
        return f"clocks fall back on {local.date()}: {local:%H:%M} occurs twice and runs once, the first time"
    return None


def is_recurring(schedule: Schedule) -> bool:
    return isinstance(schedule, RecurringSchedule)


def has_slots(schedule: Schedule) -> bool:
    return isinstance(schedule, OneTimeSchedule | RecurringSchedule)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("schedule math needs aware datetimes")
    return moment.astimezone(UTC)


def _ms(moment: datetime) -> datetime:
    """Slots are whole milliseconds (what MongoDB stores), so a stored slot compares equal."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def wall_time(value: str) -> time:
    """Parse "HH:MM[:SS]" (helper for tests and tools)."""
    return time.fromisoformat(value)
