"""Schedule state the scheduler keeps (its collection `schedule_state`) and the catalog reads.

One document per job or group: `{"_id": "job:12" | "group:3", "kind", "owner_id", "next_run",
"previous_run"}` — `next_run` is None for non-recurring schedules once fired, `previous_run` None
until the first scheduled fire (the guide leaves both blank then).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


def state_id(kind: Literal["job", "group"], owner_id: int) -> str:
    return f"{kind}:{owner_id}"


class ScheduleState(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["job", "group"]
    owner_id: int
    next_run: datetime | None = None
    previous_run: datetime | None = None
