"""Spread start times (`spread_minutes`): a stable offset per owner after each slot, checked against a
small reference model written from the rules (docs/scheduling.md, "Spread start times"):

* the offset is whole seconds in [0, spread_minutes·60), from a SHA-256 of "kind:id" (the same in
  every process, so two replicas and the catalog's preview agree);
* a slot fires at slot + offset, always before the next slot (one second before it, when daylight
  saving brought two wall slots closer than the offset);
* the slot stays the identity: due, catch-up, grace and age limits are counted on fire times.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.scheduler.domain import CatchUp, plan_slots
from services.scheduler.store.documents import ScheduleDoc
from shared.contracts.jobs import (
    CronRule,
    DailyRule,
    EveryRule,
    OnDemandSchedule,
    OneTimeSchedule,
    OnEventSchedule,
    RecurringSchedule,
)
from shared.errors import ValidationFailed
from shared.scheduling import (
    fire_at,
    first_pending,
    next_fire,
    preview,
    shortest_interval,
    spread_offset,
    validate_schedule,
    wall_time,
)
from tests.conftest import examples

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KINDS = st.sampled_from(["job", "group"])
OWNER_IDS = st.integers(min_value=1, max_value=2**62)
INSTANTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


# --- the reference model ---------------------------------------------------------------------------


def model_offset(kind: str, owner_id: int, spread_minutes: int) -> timedelta:
    """The rule: SHA-256 of "kind:id", its first 8 bytes big-endian, modulo the window in seconds."""
    if not spread_minutes:
        return timedelta(0)
    digest = hashlib.sha256(f"{kind}:{owner_id}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (spread_minutes * 60))


def model_slots(minutes: int, start: datetime, count: int) -> list[datetime]:
    """Every N minutes: the multiples of N minutes since the epoch, from the first one ≥ `start`."""
    step = minutes * 60
    first = -(-int((start - EPOCH).total_seconds()) // step)
    return [EPOCH + timedelta(seconds=(first + i) * step) for i in range(count)]


def model_fires(
    minutes: int, offset: timedelta, after: datetime, count: int
) -> list[tuple[datetime, datetime]]:
    """(slot, fire time) of the next `count` fires strictly after `after` (fire = slot + offset)."""
    slots = model_slots(minutes, after - offset - timedelta(minutes=minutes), count + 2)
    return [(s, s + offset) for s in slots if s + offset > after][:count]


@st.composite
def spread_every(draw: st.DrawFn) -> tuple[RecurringSchedule, str, int]:
    minutes = draw(st.integers(min_value=2, max_value=240))
    spread = draw(st.integers(min_value=1, max_value=min(59, minutes - 1)))
    schedule = RecurringSchedule(rule=EveryRule(minutes=minutes), spread_minutes=spread)
    return schedule, draw(KINDS), draw(OWNER_IDS)


# --- properties against the model -----------------------------------------------------------------


@settings(max_examples=examples(200))
@given(kind=KINDS, owner_id=OWNER_IDS, spread=st.integers(min_value=0, max_value=59))
def test_the_offset_is_whole_seconds_inside_the_window_and_the_rules_hash(
    kind: str, owner_id: int, spread: int
) -> None:
    schedule = RecurringSchedule(rule=EveryRule(minutes=60), spread_minutes=spread)
    offset = spread_offset(schedule, kind, owner_id)
    assert offset == model_offset(kind, owner_id, spread)
    assert offset.microseconds == 0 and timedelta(0) <= offset < timedelta(minutes=max(spread, 1))
    if not spread:
        assert offset == timedelta(0)


@settings(max_examples=examples(150))
@given(owner=spread_every(), after=INSTANTS, count=st.integers(min_value=1, max_value=12))
def test_the_preview_shows_the_models_fire_times(
    owner: tuple[RecurringSchedule, str, int], after: datetime, count: int
) -> None:
    schedule, kind, owner_id = owner
    assert isinstance(schedule.rule, EveryRule)
    offset = spread_offset(schedule, kind, owner_id)
    fires = preview(schedule, after, count, offset)
    assert [(f.slot, f.utc) for f in fires] == model_fires(schedule.rule.minutes, offset, after, count)
    for fire in fires:  # never reaches the next slot
        assert fire.slot is not None and fire.utc < fire.slot + timedelta(minutes=schedule.rule.minutes)
    page_two = preview(schedule, fires[-1].utc, 3, offset)  # paging from the last fire: no gap, no repeat
    assert [(f.slot, f.utc) for f in page_two] == model_fires(schedule.rule.minutes, offset, fires[-1].utc, 3)
    assert page_two[0].slot == next_fire(schedule, fires[-1].slot or after)


@settings(max_examples=examples(120))
@given(
    owner=spread_every(),
    start=INSTANTS,
    ticks=st.lists(st.integers(min_value=0, max_value=900), min_size=1, max_size=30),
    replicas=st.lists(st.integers(min_value=0, max_value=1), min_size=30, max_size=30),
)
def test_ticking_replicas_fire_each_slot_once_at_the_first_tick_after_its_fire_time(
    owner: tuple[RecurringSchedule, str, int], start: datetime, ticks: list[int], replicas: list[int]
) -> None:
    """Two replicas tick at random moments over one shared cursor (what the store keeps): each slot is
    fired once, by the first tick at or after slot + offset, and both replicas plan alike."""
    schedule, kind, owner_id = owner
    assert isinstance(schedule.rule, EveryRule)
    offsets = [spread_offset(schedule, kind, owner_id) for _ in range(2)]  # each replica's own
    assert offsets[0] == offsets[1]
    offset = offsets[0]
    cursor = first_pending(schedule, start, offset)  # what a new schedule starts at
    catch_up = CatchUp(slots=10_000)  # nothing missed: only the fire times are under test
    fired: dict[datetime, datetime] = {}
    now = start
    for step, seconds in enumerate(ticks):
        now += timedelta(seconds=seconds)
        plans = [plan_slots(schedule, cursor, now, catch_up, o) for o in offsets]
        assert plans[0] == plans[1]
        plan = plans[replicas[step]]
        for slot in plan.candidates:
            assert slot not in fired
            fired[slot] = now
        cursor = plan.next_slot
        assert plan.next_due == (cursor + offset if cursor else None)
    expected = [s for s, t in model_fires(schedule.rule.minutes, offset, start, 10_000) if t <= now]
    assert sorted(fired) == expected
    tick_times = sorted({start + timedelta(seconds=sum(ticks[: i + 1])) for i in range(len(ticks))})
    for slot, when in fired.items():
        assert when == min(t for t in tick_times if t >= slot + offset)


WALL_RULES = st.sampled_from(
    [
        CronRule(expression="30 1,2 * * *"),
        CronRule(expression="0,59 1,3 * * *"),
        CronRule(expression="*/15 * * * *"),
        CronRule(expression="0 2 * * *"),
        DailyRule(at=wall_time("02:30")),
    ]
)
DST_DAYS = st.sampled_from(
    [
        ("America/New_York", datetime(2026, 3, 8, 4, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 11, 1, 3, tzinfo=UTC)),
        ("Europe/Paris", datetime(2026, 3, 29, 0, tzinfo=UTC)),
        ("Europe/Paris", datetime(2026, 10, 25, 0, tzinfo=UTC)),
    ]
)


@settings(max_examples=examples(120))
@given(
    rule=WALL_RULES,
    day=DST_DAYS,
    shift=st.integers(min_value=-180, max_value=180),
    kind=KINDS,
    owner_id=OWNER_IDS,
    spread=st.integers(min_value=1, max_value=59),
)
def test_around_daylight_saving_a_fire_never_reaches_the_next_slot(
    rule: CronRule | DailyRule, day: tuple[str, datetime], shift: int, kind: str, owner_id: int, spread: int
) -> None:
    zone, around = day
    window = min(spread, shortest_interval(rule, spread) - 1)
    if window < 1:
        return
    schedule = RecurringSchedule(rule=rule, timezone=zone, spread_minutes=window)
    validate_schedule(schedule)
    offset = spread_offset(schedule, kind, owner_id)
    slot = next_fire(schedule, around + timedelta(minutes=shift))
    previous_fire = None
    for _ in range(8):
        assert slot is not None
        following = next_fire(schedule, slot)
        assert following is not None
        at = fire_at(schedule, slot, offset)
        expected = slot + offset if slot + offset < following else following - timedelta(seconds=1)
        assert at == expected and slot <= at < following
        assert previous_fire is None or previous_fire < at  # fire order is slot order
        previous_fire, slot = at, following


@settings(max_examples=examples(100))
@given(
    rule=WALL_RULES | st.builds(EveryRule, minutes=st.integers(min_value=2, max_value=120)),
    day=DST_DAYS,
    shift=st.integers(min_value=-600, max_value=600),
    kind=KINDS,
    owner_id=OWNER_IDS,
)
def test_each_previewed_fire_is_when_the_scheduler_finds_its_slot_due(
    rule: CronRule | DailyRule | EveryRule, day: tuple[str, datetime], shift: int, kind: str, owner_id: int
) -> None:
    """The catalog's preview and the scheduler's plan agree: a previewed slot is not due a millisecond
    before its previewed time and is due at it."""
    zone, around = day
    window = min(59, shortest_interval(rule, 59) - 1)
    if window < 1:
        return
    schedule = RecurringSchedule(rule=rule, timezone=zone, spread_minutes=window)
    offset = spread_offset(schedule, kind, owner_id)
    for fire in preview(schedule, around + timedelta(minutes=shift), 4, offset):
        assert fire.slot is not None
        before = plan_slots(schedule, fire.slot, fire.utc - timedelta(milliseconds=1), CatchUp(), offset)
        at = plan_slots(schedule, fire.slot, fire.utc, CatchUp(), offset)
        assert before.all_due == () and before.next_due == fire.utc
        assert at.candidates == (fire.slot,) and at.next_slot == next_fire(schedule, fire.slot)


# --- examples -------------------------------------------------------------------------------------


def test_the_offset_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from shared.contracts.jobs import RecurringSchedule, EveryRule\n"
        "from shared.scheduling import spread_offset\n"
        "s = RecurringSchedule(rule=EveryRule(minutes=60), spread_minutes=59)\n"
        "print(int(spread_offset(s, 'job', 12).total_seconds()), int(spread_offset(s, 'group', 12).total_seconds()))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PYTHONPATH": "."},
        ).stdout
        for seed in ("1", "2")
    }
    schedule = RecurringSchedule(rule=EveryRule(minutes=60), spread_minutes=59)
    here = f"{int(spread_offset(schedule, 'job', 12).total_seconds())} {int(spread_offset(schedule, 'group', 12).total_seconds())}\n"
    assert seen == {here}


def test_owners_at_the_same_slot_are_spread_over_the_window() -> None:
    schedule = RecurringSchedule(rule=CronRule(expression="0 2 * * *"), spread_minutes=15)
    offsets = [spread_offset(schedule, "job", j).total_seconds() for j in range(1, 501)]
    # 500 owners over 900 seconds: about 383 distinct seconds if uniform, none crowded
    assert len(set(offsets)) > 340 and max(offsets.count(o) for o in offsets) <= 5
    assert min(offsets) < 60 and max(offsets) > 14 * 60
    assert spread_offset(schedule, "job", 7) != spread_offset(schedule, "group", 7)


def test_catch_up_grace_and_age_are_counted_from_the_fire_time() -> None:
    """An every-10-minutes job with a 9-minute offset: its 12:00 slot fires at 12:09; a scheduler back at
    12:10:30 fires it within the 90 s grace (it was due 90 s ago), and a 60 s age limit records it missed."""
    schedule = RecurringSchedule(rule=EveryRule(minutes=10), spread_minutes=10 - 1)
    offset = timedelta(minutes=9)
    now = T0 + timedelta(minutes=10, seconds=30)
    plan = plan_slots(schedule, T0, now, CatchUp(slots=0, grace=timedelta(seconds=90)), offset)
    assert plan.candidates == (T0,) and plan.missed == ()
    assert plan.next_slot == T0 + timedelta(minutes=10) and plan.next_due == T0 + timedelta(minutes=19)
    aged = plan_slots(schedule, T0, now, CatchUp(slots=1, max_age=timedelta(seconds=60)), offset)
    assert aged.candidates == () and aged.missed == (T0,)
    early = plan_slots(schedule, T0, T0 + timedelta(minutes=8, seconds=59), CatchUp(), offset)
    assert early.all_due == () and early.next_slot == T0  # the slot has passed, its fire time has not


def test_a_slot_before_expiration_fires_although_its_fire_time_is_after_it() -> None:
    """The slot decides: the scheduler does not ask the catalog to expire the job while such a slot
    is still to fire (`ScheduleDoc.slot_before_expiry`)."""
    pending = ScheduleDoc({"next_slot": T0, "expires_at": T0 + timedelta(seconds=1)})
    assert pending.slot_before_expiry
    assert not ScheduleDoc({"next_slot": T0, "expires_at": T0}).slot_before_expiry
    assert not ScheduleDoc({"next_slot": None, "expires_at": T0}).slot_before_expiry


def test_a_changed_schedule_starts_at_the_first_slot_still_to_fire() -> None:
    schedule = RecurringSchedule(rule=EveryRule(minutes=10), spread_minutes=5)
    offset = timedelta(minutes=4)
    assert first_pending(schedule, T0 + timedelta(minutes=3), offset) == T0  # fires 12:04, still ahead
    assert first_pending(schedule, T0 + timedelta(minutes=4), offset) == T0 + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("rule", "spread", "interval"),
    [
        (EveryRule(minutes=15), 15, 15),
        (EveryRule(minutes=1), 1, 1),
        (CronRule(expression="*/10 * * * *"), 10, 10),
        (CronRule(expression="0,50 0,23 * * *"), 10, 10),  # 23:50 → 00:00 the next day
    ],
)
def test_a_window_as_long_as_the_interval_is_refused(
    rule: EveryRule | CronRule, spread: int, interval: int
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        validate_schedule(RecurringSchedule(rule=rule, spread_minutes=spread))
    assert refused.value.field == "schedule.spread_minutes"
    assert f"({interval} minutes)" in refused.value.message


@pytest.mark.parametrize(
    ("rule", "spread"),
    [
        (EveryRule(minutes=15), 14),
        (CronRule(expression="*/10 * * * *"), 9),
        (CronRule(expression="0,50 0,23 1 * *"), 30),  # only on the 1st: 23:50 is never followed by 00:00
        (CronRule(expression="0 2 * * 1-5"), 59),
        (DailyRule(at=wall_time("02:00")), 59),
    ],
)
def test_a_window_shorter_than_the_interval_is_accepted(
    rule: EveryRule | CronRule | DailyRule, spread: int
) -> None:
    validate_schedule(RecurringSchedule(rule=rule, spread_minutes=spread))


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "one_time", "at": "2030-01-01T00:00:00Z", "spread_minutes": 5},
        {"type": "on_demand", "spread_minutes": 1},
        {"type": "on_event", "trigger": "crm.ready", "spread_minutes": 59},
        {"type": "recurring", "rule": {"kind": "every", "minutes": 120}, "spread_minutes": 60},
        {"type": "recurring", "rule": {"kind": "every", "minutes": 120}, "spread_minutes": -1},
    ],
)
def test_spread_minutes_is_refused_outside_recurring_schedules_and_0_to_59(raw: dict[str, object]) -> None:
    from shared.scheduling import SCHEDULE_ADAPTER

    with pytest.raises(ValidationError) as refused:
        SCHEDULE_ADAPTER.validate_python(raw)
    assert refused.value.errors()[0]["loc"][-1] == "spread_minutes"


def test_other_schedules_accept_0_and_do_not_carry_it() -> None:
    assert OnDemandSchedule.model_validate({"spread_minutes": 0}).model_dump() == {"type": "on_demand"}
    assert "spread_minutes" not in OnEventSchedule(trigger="x").model_dump()
    assert "spread_minutes" not in OneTimeSchedule(at=T0).model_dump()
    assert spread_offset(OneTimeSchedule(at=T0), "job", 1) == timedelta(0)
