"""Preview of a schedule's next fire times (the math is the scheduler's, shared in `shared.scheduling`)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.catalog.job_schemas import FirePreview, SchedulePreview
from shared.contracts.jobs import RecurringSchedule, Schedule
from shared.scheduling import preview


def preview_schedule(schedule: Schedule, count: int) -> SchedulePreview:
    zone = schedule.timezone if isinstance(schedule, RecurringSchedule) else "UTC"
    fires = [
        FirePreview(local=slot.local, utc=slot.utc, dst_change=slot.dst_change)
        for slot in preview(schedule, datetime.now(UTC), count)
    ]
    return SchedulePreview(timezone=zone, fires=fires)
