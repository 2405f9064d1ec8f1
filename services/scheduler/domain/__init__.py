"""Scheduling rules, free of I/O: run messages, slot planning, group sequencing."""

from services.scheduler.domain.fires import (
    CatchUp,
    MissedRange,
    Outcome,
    SlotPlan,
    decide,
    ledger_key,
    missed_range,
    owner_key,
    plan_slots,
    trigger_slot,
    unrecorded,
)
from services.scheduler.domain.groups import GroupStep, StepResult, after_member_finished
from services.scheduler.domain.runs import (
    build_group_finished,
    build_group_started,
    build_run_requested,
    member_run_requested,
    next_run_id,
    scheduled_run_requested,
)

__all__ = [
    "CatchUp",
    "GroupStep",
    "MissedRange",
    "Outcome",
    "SlotPlan",
    "StepResult",
    "after_member_finished",
    "build_group_finished",
    "build_group_started",
    "build_run_requested",
    "decide",
    "ledger_key",
    "member_run_requested",
    "missed_range",
    "next_run_id",
    "owner_key",
    "plan_slots",
    "scheduled_run_requested",
    "trigger_slot",
    "unrecorded",
]
