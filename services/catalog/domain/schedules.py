"""Instants a job or group is given must lie ahead: a one-time `at` and an expiration date in the past
would never fire, or delete the definition at once. On an edit only values that change are checked:
a one-time job that already fired can still be renamed."""

from __future__ import annotations

from datetime import datetime

from shared.contracts.jobs import OneTimeSchedule, Schedule
from shared.errors import ValidationFailed


def check_instants(
    schedule: Schedule,
    expires_at: datetime | None,
    now: datetime,
    *,
    before: tuple[Schedule, datetime | None] | None = None,
) -> None:
    """`before`: the stored (schedule, expires_at) on an edit, None on create."""
    old_schedule, old_expires = before if before is not None else (None, None)
    if isinstance(schedule, OneTimeSchedule) and schedule.at <= now and schedule != old_schedule:
        raise ValidationFailed(
            f"schedule.at: {schedule.at.isoformat()} is in the past; a one-time schedule needs a future instant",
            field="schedule.at",
        )
    if expires_at is not None and expires_at <= now and (before is None or expires_at != old_expires):
        raise ValidationFailed(
            f"expires_at: {expires_at.isoformat()} is in the past; give a future date or none",
            field="expires_at",
        )
