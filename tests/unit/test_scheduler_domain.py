"""Scheduler rules without I/O: catch-up, overlap, inactivity, expiration, group sequencing, run ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.scheduler.clock import scaled_clock
from services.scheduler.domain import (
    CatchUp,
    GroupStep,
    MissedRange,
    Outcome,
    after_member_finished,
    decide,
    ledger_key,
    missed_range,
    next_run_id,
    plan_slots,
    trigger_slot,
    unrecorded,
)
from services.scheduler.domain.groups import member_refused
from shared.contracts.jobs import EveryRule, OneTimeSchedule, RecurringSchedule
from shared.contracts.runs import RunStatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOURLY = RecurringSchedule(rule=EveryRule(minutes=60))


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# --- catch-up --------------------------------------------------------------------------------------


def test_on_time_the_due_slot_fires_and_the_next_one_is_planned() -> None:
    plan = plan_slots(HOURLY, T0, T0 + timedelta(seconds=1))
    assert plan.candidates == (T0,) and plan.missed == () and plan.next_slot == T0 + hours(1)


def test_after_downtime_only_the_last_slot_fires_by_default() -> None:
    plan = plan_slots(HOURLY, T0, T0 + hours(5.5))
    assert plan.candidates == (T0 + hours(5),)
    assert plan.missed == tuple(T0 + hours(i) for i in range(5))
    assert plan.next_slot == T0 + hours(6)


def test_a_wider_catch_up_window_fires_more_missed_slots() -> None:
    plan = plan_slots(HOURLY, T0, T0 + hours(5.5), CatchUp(slots=3))
    assert plan.candidates == (T0 + hours(3), T0 + hours(4), T0 + hours(5))
    assert len(plan.missed) == 3


def test_catch_up_has_an_optional_age_limit() -> None:
    plan = plan_slots(HOURLY, T0, T0 + hours(5.5), CatchUp(slots=3, max_age=hours(1)))
    # The last slot is 30 min old and fires; the one before is 90 min old and is missed.
    assert plan.candidates == (T0 + hours(5),)
    assert len(plan.missed) == 5


def test_a_late_pass_records_its_missed_slots_as_one_range() -> None:
    # Reached 5 h 30 min late: five hourly slots missed, the sixth fires (catch-up: last slot only).
    plan = plan_slots(HOURLY, T0, T0 + hours(5.5))
    assert missed_range(plan.missed) == MissedRange(first=T0, last=T0 + hours(4), count=5)
    assert plan.candidates == (T0 + hours(5),)


def test_one_missed_slot_is_a_range_of_one_and_none_missed_is_no_entry() -> None:
    assert missed_range([T0]) == MissedRange(T0, T0, 1)
    assert missed_range([]) is None
    assert missed_range([T0 + hours(1), T0]) == MissedRange(T0, T0 + hours(1), 2)


def test_slots_covered_by_a_recorded_range_or_entry_are_not_fired_again() -> None:
    due = tuple(T0 + hours(i) for i in range(6))
    # A range entry covering slots 0..2 and a single entry for slot 4.
    recorded = [(T0, T0 + hours(2)), (T0 + hours(4), T0 + hours(4))]
    assert unrecorded(due, recorded) == (T0 + hours(3), T0 + hours(5))
    assert unrecorded(due, []) == due
    assert unrecorded((), recorded) == ()


def test_a_slot_delayed_by_a_take_over_still_fires() -> None:
    # Issue 13: every-minute slot 10:00 could not be fired before 10:01:05 (the replica holding it
    # died and its open transaction held the schedule for a minute). Without the grace the default
    # catch-up (one slot) recorded 10:00 `missed`; inside the grace both fire (subject to overlap).
    minute = RecurringSchedule(rule=EveryRule(minutes=1))
    late = T0 + timedelta(minutes=1, seconds=5)
    assert plan_slots(minute, T0, late).missed == (T0,)
    plan = plan_slots(minute, T0, late, CatchUp(grace=timedelta(seconds=90)))
    assert plan.candidates == (T0, T0 + timedelta(minutes=1)) and plan.missed == ()


def test_the_catch_up_window_counts_from_the_end_of_the_grace() -> None:
    # Down 5 h 30 min: the slot 30 min ago is inside a 1 h grace; the window's one slot is the
    # latest before the grace (4 h 30 min ago); the older ones are missed, as without a grace.
    plan = plan_slots(HOURLY, T0, T0 + hours(5.5), CatchUp(slots=1, grace=hours(1)))
    assert plan.candidates == (T0 + hours(4), T0 + hours(5))
    assert plan.missed == tuple(T0 + hours(i) for i in range(4))
    plan = plan_slots(HOURLY, T0, T0 + hours(5.5), CatchUp(slots=1, max_age=hours(1), grace=hours(1)))
    assert plan.candidates == (T0 + hours(5),)  # the age limit still applies


def test_catch_up_zero_fires_nothing_missed() -> None:
    plan = plan_slots(HOURLY, T0, T0 + hours(2.5), CatchUp(slots=0))
    assert plan.candidates == () and len(plan.missed) == 3


def test_a_one_time_slot_has_no_next_slot() -> None:
    plan = plan_slots(OneTimeSchedule(at=T0), T0, T0 + hours(1))
    assert plan.candidates == (T0,) and plan.next_slot is None


def test_nothing_is_due_before_the_slot() -> None:
    plan = plan_slots(HOURLY, T0, T0 - timedelta(seconds=1))
    assert plan.all_due == () and plan.next_slot == T0


# --- outcomes --------------------------------------------------------------------------------------


def test_slot_outcomes() -> None:
    assert decide(T0, active=True, expires_at=None, running=False) is Outcome.REQUESTED
    assert decide(T0, active=True, expires_at=None, running=True) is Outcome.OVERLAP
    assert decide(T0, active=False, expires_at=None, running=False) is Outcome.INACTIVE
    assert decide(T0, active=True, expires_at=T0, running=False) is Outcome.EXPIRED
    assert decide(T0, active=True, expires_at=T0 + hours(1), running=False) is Outcome.REQUESTED
    assert Outcome.MISSED.skipped and not Outcome.REQUESTED.skipped


def test_ledger_keys_are_one_per_owner_and_slot() -> None:
    assert ledger_key("job:1", T0) != ledger_key("job:1", T0 + timedelta(milliseconds=1))
    assert ledger_key("job:1", T0) != ledger_key("group:1", T0)
    assert ledger_key("job:1", trigger_slot("x", "k1")) == "job:1|trigger:x:k1"


def test_run_ids_count_up_from_one() -> None:
    assert str(next_run_id(7, 0)) == "7.1"
    assert str(next_run_id(7, 41)) == "7.42"


# --- groups ----------------------------------------------------------------------------------------


def group(step: int, *, cof: bool = False, stop: bool = False, failures: tuple[str, ...] = ()) -> GroupStep:
    return GroupStep(
        job_ids=(1, 2, 3), step=step, continue_on_failure=cof, stop_requested=stop, failures=failures
    )


def test_group_advances_after_success_and_partial() -> None:
    assert after_member_finished(group(0), "1.1", RunStatus.SUCCEEDED).next_step == 1
    assert after_member_finished(group(1), "2.1", RunStatus.PARTIAL).next_step == 2
    last = after_member_finished(group(2), "3.1", RunStatus.SUCCEEDED)
    assert last.next_step is None and last.status == RunStatus.SUCCEEDED


def test_a_skipped_member_is_no_failure_the_group_goes_on() -> None:
    skipped = after_member_finished(group(0), "1.1", RunStatus.SKIPPED)  # nothing to import (#17)
    assert skipped.next_step == 1 and skipped.failures == ()


def test_group_stops_after_a_failed_step() -> None:
    result = after_member_finished(group(0), "1.1", RunStatus.FAILED)
    assert result.next_step is None and result.status == RunStatus.FAILED and "1.1" in (result.error or "")


def test_group_continues_on_failure_and_ends_failed() -> None:
    middle = after_member_finished(group(0, cof=True), "1.1", RunStatus.FAILED)
    assert middle.next_step == 1 and middle.failures == ("1.1",)
    end = after_member_finished(group(2, cof=True, failures=middle.failures), "3.1", RunStatus.SUCCEEDED)
    assert end.status == RunStatus.FAILED and "1 of 3" in (end.error or "")


def test_stopping_ends_the_group_run_whatever_the_member_did() -> None:
    result = after_member_finished(group(0, stop=True), "1.1", RunStatus.SUCCEEDED)
    assert result.next_step is None and result.status == RunStatus.STOPPED


def test_a_member_that_cannot_run_is_a_failed_step() -> None:
    assert member_refused(group(0), 1, "running").status == RunStatus.FAILED
    assert member_refused(group(0, cof=True), 1, "running").next_step == 1


# --- the test clock ----------------------------------------------------------------------------------


def test_compressed_clock_runs_faster_from_its_origin() -> None:
    wall = iter([T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)])
    clock = scaled_clock(T0, 60.0, wall=lambda: next(wall))
    assert clock() == T0 + timedelta(minutes=1)
    assert clock() == T0 + timedelta(minutes=2)
