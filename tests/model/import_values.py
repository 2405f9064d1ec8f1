"""What one cell becomes in a field of a given type, as a user reads the rules.

Values are trimmed; an empty value is "no value" (a required field rejects it); a value that does not
fit its type or its `max_length` rejects the row naming the field. Stored shapes: integer → int,
number → float, boolean → bool, date → midnight UTC, timestamp → UTC instant (no offset: UTC),
email → lower case, phone and string → the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.contracts.jobs import FieldType, TableField

EMPTY: Any = None  # the converted value of an empty cell
_INTEGER = re.compile(r"^-?[0-9]+$")
_NUMBER = re.compile(r"^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9]{6,15}$")
_BOOLEANS = {"true": True, "false": False}
ISO_DATE = "%Y-%m-%d"
ISO_TIMESTAMPS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True)
class BadValue(Exception):
    """The cell does not fit its field."""

    field: str
    reason: str


def convert(spec_field: TableField, raw: str, date_format: str | None = None) -> Any:
    """The stored value of `raw` in `spec_field`, `EMPTY` for no value; raises `BadValue`."""
    text = raw.strip()
    if text == "":
        if spec_field.required:
            raise BadValue(spec_field.name, "required")
        return EMPTY
    if spec_field.max_length is not None and len(text) > spec_field.max_length:
        raise BadValue(spec_field.name, "too long")
    value = _typed(spec_field.type, text, date_format)
    if value is None:
        raise BadValue(spec_field.name, f"not a {spec_field.type.value}")
    return value


def _typed(kind: FieldType, text: str, date_format: str | None) -> Any:
    if kind is FieldType.INTEGER:
        return int(text) if _INTEGER.match(text) else None
    if kind is FieldType.NUMBER:
        return float(text) if _NUMBER.match(text) else None
    if kind is FieldType.BOOLEAN:
        return _BOOLEANS.get(text.lower())
    if kind is FieldType.DATE:
        return _date(text, (date_format or ISO_DATE,))
    if kind is FieldType.TIMESTAMP:
        return _date(text, (date_format,) if date_format else ISO_TIMESTAMPS)
    if kind is FieldType.EMAIL:
        return text.lower() if _EMAIL.match(text) else None
    if kind is FieldType.PHONE:
        return text if _PHONE.match(text) else None
    return text


def _date(text: str, formats: tuple[str, ...]) -> datetime | None:
    for date_format in formats:
        try:
            parsed = datetime.strptime(text, date_format)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    return None
