"""The scheduler's two clocks: schedule time (slots; compressible in tests) and wall time (leases, ages)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def scaled_clock(origin: datetime | None, scale: float, wall: Clock = utc_now) -> Clock:
    """Schedule time: real time, or (tests) time running `scale` times faster from `origin`."""
    if origin is None or scale == 1.0:
        return wall

    def now() -> datetime:
        return origin + (wall() - origin) * scale

    return now
