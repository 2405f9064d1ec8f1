"""A reference model of exports, written from the rules (DESIGN §4 "Export", docs/executor.md "Exports", the
export contracts in `shared/contracts/jobs.py`), never from the exporter's code.

(table state, filter, spec, watermark) → the columns, the records in order, the CSV bytes of an SFTP file and
the bodies of the REST batches. Where the rules are silent the model says what a user would expect:

* Order: list and profile extension records by `RIID_`; custom table records by their primary key.
* Columns: the spec's `fields`; empty means every field of the source table in definition order, then the
  joined extension fields in the order the spec lists them.
* Cells: dates `YYYY-MM-DD`, timestamps ISO 8601 in UTC (`+00:00`), booleans `true`/`false`, whole numbers
  without `.0`; a missing value is an empty cell. CSV cells starting with `= + - @` get a leading `'`
  (after rendering, so `-3` becomes `'-3`); a cell holding the delimiter, the quote, CR or LF is quoted with
  the quote doubled inside; a record whose only cell is empty is written `""` so that it is not a blank line.
* Filters: a condition's value is read as the field's type (booleans also as the words an import reads);
  strings compare and order case-insensitively; a record without a value for the field matches `ne` (it is
  not equal) and no other condition; `exists` is "has a value" (with `"value": false`: "has none").
* Incremental: a record is sent when its row, or its row in an extension table the export reads (joined or
  filtered on), was written (`_cx_at`) at or after the watermark (the start of the job's last successful
  run); without a watermark (first run) every record is sent.
* REST: records in batches of at most `batch_size`, values rendered as text but not neutralised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from shared.catalog_records import LIST_SYSTEM_FIELDS
from shared.contracts.jobs import (
    Condition,
    CsvFormat,
    ExportSpec,
    FieldType,
    Filter,
    ListExportSource,
    RestDestination,
    TableField,
)

CHANGED_AT = "_cx_at"
FORMULA_STARTS = ("=", "+", "-", "@")
NUMERIC = (FieldType.INTEGER, FieldType.NUMBER)
TEMPORAL = (FieldType.DATE, FieldType.TIMESTAMP)


@dataclass(frozen=True)
class ModelTable:
    """A table as the executor stores it: field values (a missing value is an absent key) and `_cx_at`."""

    name: str
    kind: str  # "list" | "profile_extension" | "custom"
    fields: tuple[TableField, ...]
    rows: tuple[dict[str, Any], ...] = ()
    primary_key: tuple[str, ...] = ()
    parent_list: str | None = None

    @property
    def all_fields(self) -> tuple[TableField, ...]:
        if self.kind == "list":
            return (*LIST_SYSTEM_FIELDS, *self.fields)
        if self.kind == "profile_extension":
            return (LIST_SYSTEM_FIELDS[0], *self.fields)
        return self.fields

    def type_of(self, name: str) -> FieldType:
        return next(f.type for f in self.all_fields if f.name == name)

    @property
    def order_key(self) -> tuple[str, ...]:
        return self.primary_key if self.kind == "custom" else ("RIID_",)


@dataclass(frozen=True)
class Expected:
    columns: list[str]
    types: list[FieldType]
    records: list[list[Any]]  # typed values in column order, None for missing


# --- which records, in which order -----------------------------------------------------------------


def expected(spec: ExportSpec, tables: Mapping[str, ModelTable], watermark: datetime | None) -> Expected:
    source = tables[spec.source.table]
    read = _read_extensions(spec, tables)
    columns, types = _columns(spec, source, tables)
    records = []
    for row in sorted(source.rows, key=lambda r: tuple(r[k] for k in source.order_key)):
        extension = _extension_values(row, source, tables)
        audience = spec.source.filter if isinstance(spec.source, ListExportSource) else None
        if audience is not None and not matches(audience, row, extension, source, tables):
            continue
        if spec.source.incremental and watermark is not None and not _changed(row, read, watermark):
            continue
        joined = {(t.name, f) for t, names in _joined_tables(spec, tables) for f in names}
        values = {**{f: v for (t, f), v in extension.items() if (t, f) in joined}, **row}
        records.append([values.get(c) for c in columns])
    return Expected(columns, types, records)


def _joined_tables(
    spec: ExportSpec, tables: Mapping[str, ModelTable]
) -> list[tuple[ModelTable, tuple[str, ...]]]:
    if not isinstance(spec.source, ListExportSource):
        return []
    return [(tables[e.table], e.fields) for e in spec.source.extension_fields]


def _read_extensions(spec: ExportSpec, tables: Mapping[str, ModelTable]) -> list[ModelTable]:
    """Every extension table the export reads: joined for its fields or named by a filter condition."""
    names = {t.name for t, _ in _joined_tables(spec, tables)}
    if isinstance(spec.source, ListExportSource) and spec.source.filter is not None:
        names |= {c.field.split(".", 1)[0] for c in spec.source.filter.conditions if "." in c.field}
    return [tables[name] for name in sorted(names)]


def _columns(
    spec: ExportSpec, source: ModelTable, tables: Mapping[str, ModelTable]
) -> tuple[list[str], list[FieldType]]:
    types = {f.name: f.type for f in source.all_fields}
    joined = [name for table, names in _joined_tables(spec, tables) for name in names]
    for table, names in _joined_tables(spec, tables):
        types.update({name: table.type_of(name) for name in names})
    columns = list(spec.fields) or [f.name for f in source.all_fields] + joined
    return columns, [types[c] for c in columns]


def _extension_values(
    row: Mapping[str, Any], source: ModelTable, tables: Mapping[str, ModelTable]
) -> dict[tuple[str, str], Any]:
    """`(table, field) → value` of every extension table of a list record (joined by `RIID_`)."""
    if source.kind != "list":
        return {}
    values: dict[tuple[str, str], Any] = {}
    for table in tables.values():
        if table.kind == "profile_extension" and table.parent_list == source.name:
            for ext_row in table.rows:
                if ext_row["RIID_"] == row["RIID_"]:
                    values.update(
                        {(table.name, k): v for k, v in ext_row.items() if k not in ("RIID_", CHANGED_AT)}
                    )
                    values[(table.name, CHANGED_AT)] = ext_row[CHANGED_AT]
    return values


def _changed(row: Mapping[str, Any], extensions: Sequence[ModelTable], since: datetime) -> bool:
    if row[CHANGED_AT] >= since:
        return True
    ext_rows = (r for table in extensions for r in table.rows if r["RIID_"] == row["RIID_"])
    return any(r[CHANGED_AT] >= since for r in ext_rows)


# --- audience filters -------------------------------------------------------------------------------


def matches(
    audience: Filter,
    row: Mapping[str, Any],
    extension: Mapping[tuple[str, str], Any],
    source: ModelTable,
    tables: Mapping[str, ModelTable],
) -> bool:
    results = []
    for condition in audience.conditions:
        if "." in condition.field:
            table, name = condition.field.split(".", 1)
            value, ftype = extension.get((table, name)), tables[table].type_of(name)
        else:
            value, ftype = row.get(condition.field), source.type_of(condition.field)
        results.append(holds(condition, value, ftype))
    return all(results) if audience.match == "all" else any(results)


def holds(condition: Condition, value: Any, ftype: FieldType) -> bool:
    """One condition on one stored value (None: the record has no value for the field)."""
    if condition.op == "exists":  # `"value": false` asks for records without a value
        return (value is not None) != (condition.value is False)
    if value is None:
        return condition.op == "ne"
    stored = _comparable(value, ftype)
    if condition.op == "in":
        assert isinstance(condition.value, list)
        return any(stored == _comparable(v, ftype) for v in condition.value)
    wanted = _comparable(condition.value, ftype)
    if condition.op == "contains":
        return isinstance(stored, str) and str(wanted) in stored
    comparisons = {
        "eq": lambda: stored == wanted,
        "ne": lambda: stored != wanted,
        "gt": lambda: stored > wanted,
        "gte": lambda: stored >= wanted,
        "lt": lambda: stored < wanted,
        "lte": lambda: stored <= wanted,
    }
    return bool(comparisons[condition.op]())


def _comparable(value: Any, ftype: FieldType) -> Any:
    """A stored value or a condition's value, read as the field's type."""
    if ftype in NUMERIC:
        return float(value)
    if ftype == FieldType.BOOLEAN:
        return value if isinstance(value, bool) else str(value).lower() in ("true", "t", "yes", "y", "1")
    if ftype in TEMPORAL:
        moment = value if isinstance(value, datetime) else _parse_moment(str(value))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return str(value).casefold()


def _parse_moment(text: str) -> datetime:
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return datetime.fromisoformat(text)


# --- rendering ---------------------------------------------------------------------------------------


def render(value: Any, ftype: FieldType) -> str:
    """A stored value as text, by the field's type."""
    if value is None:
        return ""
    if ftype == FieldType.BOOLEAN:
        return "true" if value else "false"
    if ftype == FieldType.DATE:
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if ftype == FieldType.TIMESTAMP:
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(moment.astimezone(UTC).isoformat())
    if ftype == FieldType.NUMBER and float(value).is_integer():
        return str(int(value))
    return str(value)


def neutralise(text: str) -> str:
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def csv_cell(text: str, fmt: CsvFormat) -> str:
    if any(c in text for c in (fmt.delimiter, fmt.quote, "\r", "\n")):
        return fmt.quote + text.replace(fmt.quote, fmt.quote * 2) + fmt.quote
    return text


def csv_line(cells: Sequence[str], fmt: CsvFormat) -> str:
    if len(cells) == 1 and cells[0] == "":
        return fmt.quote * 2 + "\r\n"
    return fmt.delimiter.join(csv_cell(c, fmt) for c in cells) + "\r\n"


def csv_file(result: Expected, fmt: CsvFormat) -> bytes:
    lines = [csv_line([neutralise(c) for c in result.columns], fmt)] if fmt.header else []
    for record in result.records:
        lines.append(
            csv_line([neutralise(render(v, t)) for v, t in zip(record, result.types, strict=True)], fmt)
        )
    text = "".join(lines)
    return text.encode(fmt.encoding) if text else b""  # nothing to write: an empty file, not a lone BOM


def rest_batches(result: Expected, destination: RestDestination) -> list[dict[str, Any]]:
    """The Responsys merge-list-members bodies, in order (only the parts the rules fix)."""
    rendered = [[render(v, t) for v, t in zip(r, result.types, strict=True)] for r in result.records]
    size = destination.batch_size
    return [
        {
            "recordData": {"fieldNames": result.columns, "records": rendered[i : i + size]},
            "mergeRule": {"matchColumnName1": destination.match_column},
        }
        for i in range(0, len(rendered), size)
    ]
