"""Mapping CSV records onto table fields: the column plan, coercion and validation per field type."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.executor.domain.csvsplit import CsvRecord
from services.executor.errors import BadFile
from shared.contracts.jobs import FieldMapping, FieldType, TableField

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_DIGITS = re.compile(r"^\+?[0-9]{6,15}$")
PHONE_PUNCTUATION = re.compile(r"[\s().-]")
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})

Converter = Callable[[str], Any]


@dataclass(frozen=True)
class Rejection:
    line: int
    field: str
    reason: str
    file: int = 0  # which file of a multi-file source (0-based), for ordering the rejects file
    record: str = ""  # the raw record as in the file, cut to a readable length (domain/records.py)


@dataclass(frozen=True)
class ColumnPlan:
    """Where each mapped field's value sits in a record, decided once from the header."""

    positions: tuple[tuple[int, TableField], ...]
    width: int
    converters: tuple[tuple[int, TableField, Converter], ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for _, f in self.positions)


def plan_columns(
    header: Sequence[str], mapping: Iterable[FieldMapping], fields: Sequence[TableField]
) -> ColumnPlan:
    """Columns are found by header name, or by 1-based position when the column is a number."""
    by_name = {f.name: f for f in fields}
    index = {name.strip(): i for i, name in enumerate(header)}
    mapping = list(mapping)

    def position(column: str) -> int | None:
        if column in index:
            return index[column]
        if column.isdigit() and 1 <= int(column) <= len(header):
            return int(column) - 1
        return None

    missing = [m.column for m in mapping if position(m.column) is None]
    if missing:
        raise BadFile(f"bad header: column(s) {', '.join(missing)} not found in {list(index)}")
    unknown = [m.field for m in mapping if m.field not in by_name]
    if unknown:
        raise BadFile(f"mapping names unknown field(s) {', '.join(unknown)}")
    positions = tuple((position(m.column) or 0, by_name[m.field]) for m in mapping)
    converters = tuple(
        (pos, by_name[m.field], converter_for(by_name[m.field], m.date_format))
        for (pos, _), m in zip(positions, mapping, strict=True)
    )
    return ColumnPlan(positions=positions, width=len(header), converters=converters)


def map_record(record: CsvRecord, plan: ColumnPlan) -> dict[str, Any] | Rejection:
    """A table row from a CSV record, or the reason it is rejected (empty optional values left out)."""
    values = record.values
    if len(values) != plan.width:
        return Rejection(record.line, "columns", f"expected {plan.width} columns, found {len(values)}")
    row: dict[str, Any] = {}
    for position, table_field, convert in plan.converters or _default_converters(plan):
        raw = values[position].strip()
        if raw == "":
            if table_field.required:
                return Rejection(record.line, table_field.name, "required value is empty")
            continue
        if table_field.max_length is not None and len(raw) > table_field.max_length:
            return Rejection(
                record.line, table_field.name, f"longer than {table_field.max_length} characters"
            )
        try:
            row[table_field.name] = convert(raw)
        except ValueError as exc:
            return Rejection(record.line, table_field.name, str(exc))
    return row


def _default_converters(plan: ColumnPlan) -> tuple[tuple[int, TableField, Converter], ...]:
    return tuple((pos, f, converter_for(f, None)) for pos, f in plan.positions)


def coerce(raw: str, table_field: TableField, date_format: str | None = None) -> Any:
    """Convert and check one cell; raises ValueError with the reason."""
    if raw == "":
        if table_field.required:
            raise ValueError("required value is empty")
        return None
    if table_field.max_length is not None and len(raw) > table_field.max_length:
        raise ValueError(f"longer than {table_field.max_length} characters")
    return converter_for(table_field, date_format)(raw)


def converter_for(table_field: TableField, date_format: str | None) -> Converter:
    if date_format and table_field.type in (FieldType.DATE, FieldType.TIMESTAMP):
        return _formatted_date(date_format, date_only=table_field.type == FieldType.DATE)
    return _CONVERTERS[table_field.type]


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"'{raw}' is not an integer") from None


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"'{raw}' is not a number") from None


def _boolean(raw: str) -> bool:
    word = raw.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"'{raw}' is not a boolean")


def _date(raw: str) -> datetime:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"'{raw}' is not a date (YYYY-MM-DD)") from None
    return datetime(day.year, day.month, day.day)  # BSON has no date-only type


def _timestamp(raw: str) -> datetime:
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"'{raw}' is not an ISO-8601 timestamp") from None


def _formatted_date(fmt: str, *, date_only: bool) -> Converter:
    def convert(raw: str) -> datetime:
        try:
            value = datetime.strptime(raw, fmt)
        except ValueError:
            raise ValueError(f"'{raw}' does not match the date format '{fmt}'") from None
        return datetime(value.year, value.month, value.day) if date_only else value

    return convert


def _email(raw: str) -> str:
    email = raw.lower()
    if not EMAIL.match(email):
        raise ValueError(f"'{raw}' is not an email address")
    return email


def _phone(raw: str) -> str:
    phone = PHONE_PUNCTUATION.sub("", raw)
    if not PHONE_DIGITS.match(phone):
        raise ValueError(f"'{raw}' is not a phone number")
    return phone


_CONVERTERS: dict[FieldType, Converter] = {
    FieldType.STRING: str,
    FieldType.INTEGER: _integer,
    FieldType.NUMBER: _number,
    FieldType.BOOLEAN: _boolean,
    FieldType.DATE: _date,
    FieldType.TIMESTAMP: _timestamp,
    FieldType.EMAIL: _email,
    FieldType.PHONE: _phone,
}


def key_of(row: dict[str, Any], primary_key: Sequence[str]) -> tuple[Any, ...] | None:
    """The row's primary-key values, or None when one is missing."""
    values = tuple(row.get(name) for name in primary_key)
    return None if any(v is None for v in values) else values
