"""Import rules, free of I/O: splitting a byte stream into CSV records, mapping and validating them.

Records are split on line ends outside quotes, so a quoted field may hold newlines and the line
number of every record (where it starts in the file) is known for the rejects file.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from services.executor.errors import BadFile
from shared.contracts.jobs import CsvFormat, FieldMapping, FieldType, TableField
from shared.contracts.runs import RunCounts, RunStatus

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_DIGITS = re.compile(r"^\+?[0-9]{6,15}$")
LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


@dataclass(frozen=True)
class CsvRecord:
    line: int  # line number in the file where the record starts (1-based, header included)
    values: list[str]


class CsvSplitter:
    """Turns byte chunks into complete CSV records, keeping line numbers."""

    def __init__(self, fmt: CsvFormat) -> None:
        self.fmt = fmt
        self._decoder = codecs.getincrementaldecoder(_python_encoding(fmt.encoding))(errors="strict")
        self._partial_line = ""
        self._pending: list[str] = []  # physical lines of a record not yet closed
        self._inside_quotes = False
        self._next_line = 1
        self._record_start = 1
        self._first = True

    def feed(self, chunk: bytes, *, final: bool = False) -> list[CsvRecord]:
        try:
            text = self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError as exc:
            # Bytes the decoder held back from the previous chunk are not counted: a line ends in "\n".
            line = self._next_line + chunk[: max(exc.start, 0)].count(b"\n")
            raise BadFile(f"file is not valid {self.fmt.encoding} at line {line}: {exc.reason}") from exc
        if self._first and text:
            text = text.removeprefix("\ufeff")  # byte-order mark
            self._first = False
        lines = LINE.findall(self._partial_line + text)
        # A last line without "\n" may continue in the next chunk (even "\r" may be half of "\r\n").
        self._partial_line = lines.pop() if lines and not final and not lines[-1].endswith("\n") else ""
        complete: list[tuple[int, str]] = []
        for line in lines:
            if not self._pending:
                self._record_start = self._next_line
            self._pending.append(line)
            self._next_line += 1
            if line.count(self.fmt.quote) % 2:
                self._inside_quotes = not self._inside_quotes
            if not self._inside_quotes:
                complete.append((self._record_start, "".join(self._pending)))
                self._pending = []
        if final and self._pending:
            complete.append((self._record_start, "".join(self._pending)))
            self._pending = []
        return self._parse(complete)

    def _parse(self, texts: list[tuple[int, str]]) -> list[CsvRecord]:
        records: list[CsvRecord] = []
        for line, text in texts:
            if not text.strip("\r\n"):
                continue  # empty line
            values = next(csv.reader([text], delimiter=self.fmt.delimiter, quotechar=self.fmt.quote), [])
            records.append(CsvRecord(line, values))
        return records


def _python_encoding(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except LookupError as exc:
        raise BadFile(f"unknown encoding '{name}'") from exc


@dataclass(frozen=True)
class Rejection:
    line: int
    field: str
    reason: str


@dataclass(frozen=True)
class ColumnPlan:
    """Where each mapped field's value sits in a record, decided once from the header."""

    positions: tuple[tuple[int, TableField], ...]
    width: int


def plan_columns(
    header: Sequence[str], mapping: Iterable[FieldMapping], fields: Sequence[TableField]
) -> ColumnPlan:
    by_name = {f.name: f for f in fields}
    index = {name.strip(): i for i, name in enumerate(header)}
    missing = [m.column for m in mapping if m.column not in index]
    if missing:
        raise BadFile(f"bad header: column(s) {', '.join(missing)} not found in {list(index)}")
    unknown = [m.field for m in mapping if m.field not in by_name]
    if unknown:
        raise BadFile(f"mapping names unknown field(s) {', '.join(unknown)}")
    positions = tuple((index[m.column], by_name[m.field]) for m in mapping)
    return ColumnPlan(positions=positions, width=len(header))


def map_record(record: CsvRecord, plan: ColumnPlan) -> dict[str, Any] | Rejection:
    """A table row from a CSV record, or the reason it is rejected."""
    if len(record.values) != plan.width:
        reason = f"expected {plan.width} columns, found {len(record.values)}"
        return Rejection(record.line, "", reason)
    row: dict[str, Any] = {}
    for position, table_field in plan.positions:
        raw = record.values[position].strip()
        try:
            value = coerce(raw, table_field)
        except ValueError as exc:
            return Rejection(record.line, table_field.name, str(exc))
        if value is not None:
            row[table_field.name] = value
    return row


def coerce(raw: str, table_field: TableField) -> Any:
    """Convert and check one cell; raises ValueError with the reason."""
    if raw == "":
        if table_field.required:
            raise ValueError("required value is empty")
        return None
    if table_field.max_length is not None and len(raw) > table_field.max_length:
        raise ValueError(f"longer than {table_field.max_length} characters")
    converter = _CONVERTERS[table_field.type]
    return converter(raw)


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


def _email(raw: str) -> str:
    email = raw.lower()
    if not EMAIL.match(email):
        raise ValueError(f"'{raw}' is not an email address")
    return email


def _phone(raw: str) -> str:
    phone = re.sub(r"[\s().-]", "", raw)
    if not PHONE_DIGITS.match(phone):
        raise ValueError(f"'{raw}' is not a phone number")
    return phone


_CONVERTERS: dict[FieldType, Any] = {
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


@dataclass
class Tally:
    """Counts of a run as it goes."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    bytes_read: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.rejections.append(rejection)

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def counts(self) -> RunCounts:
        return RunCounts(read=self.read, inserted=self.inserted, updated=self.updated, rejected=self.rejected)

    def final_status(self) -> RunStatus:
        return RunStatus.PARTIAL if self.rejected else RunStatus.SUCCEEDED


def rejects_csv_lines(rejections: Iterable[Rejection]) -> Iterable[list[str]]:
    yield ["line", "field", "reason"]
    for r in rejections:
        yield [str(r.line), r.field, r.reason]


def rejects_path(source_path: str, run_id: str) -> str:
    return f"{source_path}.{run_id}.rejects.csv"


def percent_milestone(done: int, total: int | None, last: int) -> int | None:
    """The next 10 % milestone crossed, if any (for the run log)."""
    if not total:
        return None
    reached = min(100, (done * 100 // total) // 10 * 10)
    return reached if reached > last else None
