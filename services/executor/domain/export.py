"""Export rules, free of I/O: CSV cells neutralised against formula injection, filters, file names."""

from __future__ import annotations

import codecs
import csv
import io
import string
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from services.executor.domain.mapping import FALSE_WORDS, TRUE_WORDS
from services.executor.errors import UnwritableValue
from shared.contracts.jobs import Condition, CsvFormat, FieldType, Filter

FORMULA_STARTS = ("=", "+", "-", "@")
HIDDEN_PREFIX = "_"  # `_id` and Connect's bookkeeping fields (`_cx_*`) are never exported


def neutralise(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading single quote."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None and value.time() == time(0):
            return value.date().isoformat()  # a date as BSON stores it (no date-only type)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return neutralise(str(int(value)) if abs(value) < 1e15 else repr(value))
    return neutralise(str(value))


def typed(value: Any, field_type: FieldType | None) -> Any:
    """A stored value as its field's type says: the database gives dates back as UTC datetimes."""
    if isinstance(value, datetime):
        if field_type == FieldType.DATE:
            return value.date()
        if field_type == FieldType.TIMESTAMP and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
    return value


class CsvEncoder:
    """Rows → CSV text with the job's delimiter and quote, `\\r\\n` line ends, header first."""

    def __init__(self, fmt: CsvFormat, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._buffer = io.StringIO()
        self._writer = csv.writer(
            self._buffer, delimiter=fmt.delimiter, quotechar=fmt.quote, lineterminator="\r\n"
        )
        encoding = "utf-8" if fmt.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else fmt.encoding
        self.encoding = encoding
        # One incremental encoder for the whole file: a BOM (utf-8-sig, utf-16) is written once, not per batch.
        # Strict: a value the encoding cannot write fails the export; replacing it would alter data unseen.
        self._encoder = codecs.getincrementalencoder(encoding)(errors="strict")

    def header(self) -> bytes:
        cells = [neutralise(c) for c in self.columns]
        self._writer.writerow(cells)
        return self._take([cells])

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> bytes:
        cells = [[cell(row.get(c)) for c in self.columns] for row in rows]
        self._writer.writerows(cells)
        return self._take(cells)

    def _take(self, lines: Sequence[Sequence[str]]) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        try:
            return self._encoder.encode(text)
        except UnicodeEncodeError as exc:
            raise self._unwritable(lines, exc) from None

    def _unwritable(self, lines: Sequence[Sequence[str]], exc: UnicodeEncodeError) -> UnwritableValue:
        """Which column holds what the encoding cannot write (the first value holding it)."""
        char = exc.object[exc.start : exc.end][:1]
        for line in lines:
            for column, text in zip(self.columns, line, strict=True):
                if char in text:
                    return UnwritableValue(
                        f"a value of column {column!r} ({text[:40]!r}) holds {char!r} (U+{ord(char):04X}), which "
                        f"encoding {self.encoding} cannot write; export with encoding utf-8 or change the value"
                    )
        return UnwritableValue(f"{char!r} (U+{ord(char):04X}) cannot be written in encoding {self.encoding}")


def visible_columns(row: Mapping[str, Any]) -> list[str]:
    return [k for k in row if not k.startswith(HIDDEN_PREFIX)]


def render_path(template: str, *, now: datetime, run_id: str, job_id: int) -> str:
    fields = {
        "date": now.strftime("%Y%m%d"),
        "time": now.strftime("%H%M%S"),
        "run_id": run_id,
        "job_id": str(job_id),
    }
    return string.Formatter().vformat(template, (), fields)


# --- filters (audiences) --------------------------------------------------------------------------


def matches(row: Mapping[str, Any], audience: Filter) -> bool:
    results = (condition_holds(row.get(c.field), c) for c in audience.conditions)
    return all(results) if audience.match == "all" else any(results)


def condition_holds(value: Any, condition: Condition) -> bool:
    op, wanted = condition.op, condition.value
    if op == "exists":
        return (value is not None) == (wanted is not False)
    if op == "in":
        options = wanted if isinstance(wanted, list) else [wanted]
        return any(_equal(value, o) for o in options)
    if op == "eq":
        return _equal(value, wanted)
    if op == "ne":
        return not _equal(value, wanted)
    if op == "contains":
        return value is not None and str(wanted).lower() in str(value).lower()
    if value is None or wanted is None:
        return False
    left, right = _comparable(value, wanted)
    try:
        return bool({"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op])
    except TypeError:
        return False


def _equal(value: Any, wanted: Any) -> bool:
    if value is None or wanted is None:
        return value is wanted
    left, right = _comparable(value, wanted)
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    return bool(left == right)


def _comparable(value: Any, wanted: Any) -> tuple[Any, Any]:
    """Compare a stored value with a filter's literal of the same kind (dates given as ISO text)."""
    if isinstance(value, datetime) and isinstance(wanted, str):
        try:
            parsed = datetime.fromisoformat(wanted)
        except ValueError:
            return str(value), wanted
        if value.tzinfo is not None and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if value.tzinfo is None and parsed.tzinfo is not None:
            value = value.replace(tzinfo=UTC)
        return value, parsed
    if isinstance(value, bool) and isinstance(wanted, str):
        word = wanted.strip().lower()  # the words an import reads as booleans
        return value, True if word in TRUE_WORDS else False if word in FALSE_WORDS else wanted
    if isinstance(value, bool) or isinstance(wanted, bool):
        return value, wanted
    if isinstance(value, int | float) and isinstance(wanted, str):
        try:
            return value, float(wanted)
        except ValueError:
            return str(value), wanted
    if isinstance(value, str) and isinstance(wanted, int | float):
        return value.lower(), str(wanted)
    if isinstance(value, str) and isinstance(wanted, str):
        return value.lower(), wanted.lower()  # text is ordered without case, as `eq` compares it
    return value, wanted


def pushdown_query(audience: Filter | None) -> dict[str, Any]:
    """The part of a filter the database can apply on the list itself (all-conditions on list fields)."""
    if audience is None or audience.match != "all":
        return {}
    query: dict[str, Any] = {}
    for condition in audience.conditions:
        if "." in condition.field or condition.op != "exists":
            continue
        query[condition.field] = {"$exists": True, "$ne": None} if condition.value is not False else None
    return query


def split_extension_field(name: str) -> tuple[str, str] | None:
    table, dot, field_name = name.partition(".")
    return (table, field_name) if dot and field_name else None
