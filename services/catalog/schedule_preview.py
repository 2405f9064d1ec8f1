"""Preview of a schedule's next fire times (the math is the scheduler's, shared in `shared.scheduling`).

`start` lets a user look at any later stretch (next year's daylight-saving changes); the answer's
`next_from` is where the following page starts, so the console pages forward without gaps or repeats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.catalog.domain.partner_files import dated_source_path
from services.catalog.job_schemas import FirePreview, SchedulePreview
from shared.contracts.jobs import JobSpec, RecurringSchedule, Schedule
from shared.errors import ValidationFailed
from shared.scheduling import MAX_PREVIEW, preview, spread_offset

MAX_FIRES = 1000  # per request: a daily schedule's next ~2.7 years; `from` reaches further
MAX_AHEAD = timedelta(days=366 * 100)
PREVIEW_FROM = "Fires after this instant (ISO 8601 with offset); default now. Page on with `next_from`."


def preview_schedule(
    schedule: Schedule,
    count: int,
    start: datetime | None = None,
    *,
    kind: str,
    owner_id: int,
    spec: JobSpec | None = None,
) -> SchedulePreview:
    """The owner's next fires: with `spread_minutes`, each slot shifted by the owner's stable offset
    (`kind` and id), exactly when the scheduler fires it; a dated import's path as of each slot."""
    now = datetime.now(UTC)
    after = start or now
    if after.tzinfo is None:
        raise ValidationFailed(
            "from: give an instant with its offset, e.g. 2027-03-01T00:00:00Z", field="from"
        )
    if abs(after - now) > MAX_AHEAD:
        raise ValidationFailed("from: give an instant within 100 years of now", field="from")
    zone = schedule.timezone if isinstance(schedule, RecurringSchedule) else "UTC"
    offset = spread_offset(schedule, kind, owner_id)
    fires: list[FirePreview] = []
    wanted = min(count, MAX_FIRES)
    while len(fires) < wanted:  # the shared math answers at most MAX_PREVIEW fires at a time
        asked = min(wanted - len(fires), MAX_PREVIEW)
        page = preview(schedule, after, asked, offset)
        fires += [
            FirePreview(
                local=s.local, utc=s.utc, dst_change=s.dst_change, slot=s.slot,
                # the run reads the file of its slot's date (the fire time may be later, by the spread)
                source_path=None if spec is None else dated_source_path(spec, schedule, s.slot or s.utc),
            )
            for s in page
        ]  # fmt: skip
        if len(page) < asked:  # the schedule has no more fires
            break
        after = page[-1].utc
    next_from = fires[-1].utc if len(fires) == wanted else None
    spread = int(offset.total_seconds())
    return SchedulePreview(timezone=zone, fires=fires, next_from=next_from, spread_offset_seconds=spread)
