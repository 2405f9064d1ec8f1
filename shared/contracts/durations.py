"""A run's time limit, written as an ISO 8601 duration (`PT2H`, `PT90M`, `PT2S`, `P1D`): the pure rules.

Accepted: days, hours, minutes and seconds (the seconds may have a fraction), more than zero and at
most 24 hours. Years, months and weeks are refused: their length is not fixed, and none fits in a day.
"""

from __future__ import annotations

import re
from datetime import timedelta

MAX_RUN_DURATION = timedelta(hours=24)
_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_max_duration(text: str) -> timedelta:
    """The duration `text` names; ValueError (its message says why) when it is not a valid time limit."""
    written = text.strip().upper()
    match = _DURATION.match(written)
    if match is None or written in ("P", "PT") or written.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration like 'PT2H', 'PT30M' or 'PT45S'")
    parts = {name: float(value) for name, value in match.groupdict().items() if value is not None}
    try:
        duration = timedelta(**parts)
    except OverflowError:
        duration = MAX_RUN_DURATION * 2  # far too long: refused below
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    if duration > MAX_RUN_DURATION:
        raise ValueError(f"{text!r} is longer than the 24 hours a run may last")
    return duration


def checked_max_duration(text: str) -> str:
    """`text` as stored (upper case, no spaces) once it is a valid time limit: a pydantic validator."""
    parse_max_duration(text)
    return text.strip().upper()
