"""Schedule math (shared.scheduling): every form, several zones, both daylight-saving transitions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta

import pytest

from shared.contracts.jobs import (
    CronRule,
    DailyRule,
    EveryRule,
    MonthlyRule,
    OnDemandSchedule,
    OneTimeSchedule,
    OnEventSchedule,
    RecurringSchedule,
    WeeklyRule,
)
from shared.errors import ValidationFailed
from shared.scheduling import next_fire, preview, validate_schedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def daily(at: str, zone: str) -> RecurringSchedule:
    return RecurringSchedule(rule=DailyRule(at=time.fromisoformat(at)), timezone=zone)


def fires(schedule: RecurringSchedule, after: datetime, count: int) -> list[datetime]:
    result, moment = [], after
    for _ in range(count):
        found = next_fire(schedule, moment)
        assert found is not None
        result.append(found)
        moment = found
    return result


# --- every form ------------------------------------------------------------------------------------


def test_one_time_fires_once_at_its_instant() -> None:
    at = utc(2026, 5, 1, 9, 30)
    schedule = OneTimeSchedule(at=at)
    assert next_fire(schedule, utc(2026, 4, 1)) == at
    assert next_fire(schedule, at) is None


def test_on_demand_and_on_event_schedules_have_no_slots() -> None:
    assert next_fire(OnDemandSchedule(), utc(2026, 1, 1)) is None
    assert next_fire(OnEventSchedule(trigger="crm.ready"), utc(2026, 1, 1)) is None
    assert preview(OnDemandSchedule(), utc(2026, 1, 1), 5) == []


def test_every_n_minutes_is_aligned_elapsed_time() -> None:
    schedule = RecurringSchedule(rule=EveryRule(minutes=15), timezone="Europe/Paris")
    assert fires(schedule, utc(2026, 1, 1, 10, 7), 3) == [
        utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10, 45),
    ]  # fmt: skip


def test_every_n_minutes_keeps_its_interval_across_daylight_saving() -> None:
    schedule = RecurringSchedule(rule=EveryRule(minutes=60), timezone="America/New_York")
    slots = fires(schedule, utc(2026, 11, 1, 4, 30), 4)  # New York falls back at 06:00Z
    assert [b - a for a, b in itertools.pairwise(slots)] == [timedelta(hours=1)] * 3


def test_cron_in_a_zone() -> None:
    schedule = RecurringSchedule(rule=CronRule(expression="0 9 * * 1-5"), timezone="Asia/Tokyo")
    # Friday 2026-01-02 09:00 JST = 00:00Z; next is Monday 2026-01-05.
    assert fires(schedule, utc(2026, 1, 1, 12), 2) == [utc(2026, 1, 2, 0), utc(2026, 1, 5, 0)]


def test_daily_in_a_zone() -> None:
    assert fires(daily("02:00", "Australia/Sydney"), utc(2026, 6, 1), 2) == [
        utc(2026, 6, 1, 16), utc(2026, 6, 2, 16),
    ]  # fmt: skip


def test_weekly_on_days() -> None:
    schedule = RecurringSchedule(rule=WeeklyRule(days=("mon", "thu"), at=time(8, 0)), timezone="UTC")
    assert fires(schedule, utc(2026, 3, 3), 3) == [
        utc(2026, 3, 5, 8),
        utc(2026, 3, 9, 8),
        utc(2026, 3, 12, 8),
    ]


def test_monthly_on_a_day_short_months_run_on_their_last_day() -> None:
    schedule = RecurringSchedule(rule=MonthlyRule(day=31, at=time(6)), timezone="UTC")
    assert fires(schedule, utc(2028, 1, 1), 3) == [
        utc(2028, 1, 31, 6),
        utc(2028, 2, 29, 6),
        utc(2028, 3, 31, 6),
    ]


# --- daylight saving, two zones and both transitions -----------------------------------------------

SPRING_GAP = [
    # zone, day of the change, a wall time inside the gap, the instant it runs at (end of the gap)
    ("America/New_York", (2026, 3, 8), "02:30", utc(2026, 3, 8, 7, 0)),
    ("Europe/Paris", (2026, 3, 29), "02:30", utc(2026, 3, 29, 1, 0)),
]
FALL_REPEAT = [
    # zone, day of the change, a wall time that occurs twice, its first occurrence
    ("America/New_York", (2026, 11, 1), "01:30", utc(2026, 11, 1, 5, 30)),
    ("Europe/Paris", (2026, 10, 25), "02:30", utc(2026, 10, 25, 0, 30)),
]


@pytest.mark.parametrize(("zone", "day", "at", "expected"), SPRING_GAP)
def test_a_slot_in_the_spring_forward_gap_runs_at_the_end_of_the_gap(
    zone: str, day: tuple[int, int, int], at: str, expected: datetime
) -> None:
    schedule = daily(at, zone)
    slots = fires(schedule, datetime(*day, tzinfo=UTC) - timedelta(days=1), 3)
    assert slots[1] == expected
    # The days around it are unaffected: 24 h apart in wall time.
    assert slots[2] - slots[0] == timedelta(hours=47)
    flagged = preview(schedule, datetime(*day, tzinfo=UTC) - timedelta(days=1), 3)
    assert [p.dst_change for p in flagged] == [False, True, False]
    assert flagged[1].utc == expected and flagged[1].note and "spring forward" in flagged[1].note


@pytest.mark.parametrize(("zone", "day", "at", "expected"), FALL_REPEAT)
def test_a_slot_in_the_fall_back_repeat_runs_once_at_its_first_occurrence(
    zone: str, day: tuple[int, int, int], at: str, expected: datetime
) -> None:
    schedule = daily(at, zone)
    slots = fires(schedule, datetime(*day, tzinfo=UTC) - timedelta(days=1), 3)
    assert slots[1] == expected
    assert slots[2] - slots[1] == timedelta(hours=25)  # the second occurrence does not run
    flagged = preview(schedule, datetime(*day, tzinfo=UTC) - timedelta(days=1), 3)
    assert [p.dst_change for p in flagged] == [False, True, False]
    assert flagged[1].local.hour == int(at[:2]) and flagged[1].local.fold == 0


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Paris"])
def test_cron_slots_inside_the_gap_collapse_into_one_fire(zone: str) -> None:
    schedule = RecurringSchedule(rule=CronRule(expression="*/15 2 * * *"), timezone=zone)
    day = {"America/New_York": (2026, 3, 8), "Europe/Paris": (2026, 3, 29)}[zone]
    start = datetime(*day, tzinfo=UTC) - timedelta(hours=12)
    slots = fires(schedule, start, 2)
    assert slots[1] - slots[0] == timedelta(days=1) - timedelta(hours=1)  # 02:00→03:00, then next 02:00


@pytest.mark.parametrize("zone", ["America/New_York", "Europe/Paris"])
def test_cron_in_the_fall_back_repeat_runs_each_wall_time_once(zone: str) -> None:
    schedule = RecurringSchedule(rule=CronRule(expression="30 * * * *"), timezone=zone)
    day = {"America/New_York": (2026, 11, 1, 3), "Europe/Paris": (2026, 10, 24, 23)}[zone]
    slots = fires(schedule, datetime(*day, tzinfo=UTC), 4)
    # Around the change, the repeated hour's :30 runs once: one two-hour step among one-hour ones.
    steps = [b - a for a, b in itertools.pairwise(slots)]
    assert sorted(steps) == [timedelta(hours=1), timedelta(hours=1), timedelta(hours=2)]


def test_preview_shows_zone_and_utc() -> None:
    upcoming = preview(daily("09:00", "Europe/Paris"), utc(2026, 7, 1), 2)
    assert [(p.local.isoformat(), p.utc.isoformat()) for p in upcoming] == [
        ("2026-07-01T09:00:00+02:00", "2026-07-01T07:00:00+00:00"),
        ("2026-07-02T09:00:00+02:00", "2026-07-02T07:00:00+00:00"),
    ]


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (RecurringSchedule(rule=CronRule(expression="61 * * * *")), "schedule.rule.expression"),
        (RecurringSchedule(rule=CronRule(expression="0 0 30 2 *")), "schedule.rule.expression"),
        (RecurringSchedule(rule=CronRule(expression="0 0 * * * *")), "schedule.rule.expression"),
        (RecurringSchedule(rule=EveryRule(minutes=5), timezone="Mars/Olympus"), "schedule.timezone"),
    ],
)
def test_invalid_schedules_name_the_field(schedule: RecurringSchedule, field: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        validate_schedule(schedule)
    assert error.value.field == field


def test_valid_schedules_pass() -> None:
    validate_schedule(
        RecurringSchedule(rule=CronRule(expression="*/5 8-18 * * mon-fri"), timezone="Asia/Kolkata")
    )
    validate_schedule(OneTimeSchedule(at=utc(2030, 1, 1)))
