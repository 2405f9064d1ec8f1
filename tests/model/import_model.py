"""Reference model of an import: (table state, logical file records, job spec) → expected outcome.

Written from DESIGN §4, docs/executor.md ("Imports") and the counting rules of issue #12:

* `read` counts data records (blank lines are `skipped`); `read = inserted + updated + unchanged +
  rejected` for every completed run.
* Records are taken in file order; a key repeated in the file: the last occurrence wins, the first new
  one counts `inserted`, each later one `updated` (also under `no_update`: the record is the run's own).
* A row that matches a record the run has not written, and whose values the record holds already, counts
  `unchanged` (issue #14: it is not rewritten); once the run wrote a record, each later row is `updated`.
* Every row not written is a reject naming a field (`columns` for a wrong column count).
* Guards fail a run before anything a user can see changes; a failed run reports no writes.

Records are dicts of field → stored value. List records created by the run carry `RIID_ = NEW_RIID`:
the rules only say they get distinct values not used before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.catalog_records import LIST_MATCH_COLUMNS
from shared.contracts.jobs import (
    CustomTableTarget,
    FieldType,
    ImportSpec,
    ListTarget,
    ProfileExtensionTarget,
    TableField,
)
from tests.model.import_values import EMPTY, BadValue, convert

NEW_RIID = "<new RIID_>"
Record = dict[str, Any]


@dataclass(frozen=True)
class Table:
    name: str
    kind: str  # list | profile_extension | custom
    fields: tuple[TableField, ...]
    primary_key: tuple[str, ...] = ()

    def field(self, name: str) -> TableField:
        return next(f for f in self.fields if f.name == name)

    @property
    def key(self) -> tuple[str, ...]:
        return self.primary_key if self.kind == "custom" else ("RIID_",)


@dataclass(frozen=True)
class FileRecord:
    """One data record of the file: its first physical line and its cells (by column name)."""

    line: int
    cells: dict[str, str] | None  # None: the record has the wrong number of columns


@dataclass(frozen=True)
class Reject:
    line: int
    fields: frozenset[str]  # the reject names one of these
    reason: str  # a reason class, not the exact text


@dataclass
class Outcome:
    status: str  # succeeded | partial | failed
    table: list[Record]
    counts: dict[str, int]
    rejects: list[Reject] = field(default_factory=list)


class _Rejected(Exception):
    def __init__(self, fields: Sequence[str], reason: str) -> None:
        super().__init__(reason)
        self.fields, self.reason = frozenset(fields), reason


@dataclass
class _Load:
    """The table as the run sees it while it goes through the file."""

    records: list[Record]
    created: set[int] = field(default_factory=set)  # ids of records this run inserted
    changed: set[int] = field(default_factory=set)  # ids of records this run inserted or updated
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("inserted", "updated", "unchanged", "rejected"), 0)
    )
    rejects: list[Reject] = field(default_factory=list)

    def insert(self, record: Record) -> None:
        self.records.append(record)
        self.created.add(id(record))
        self.changed.add(id(record))
        self.counts["inserted"] += 1

    def update(self, record: Record, values: Record) -> None:
        """A record that existed before the run and already holds the values is left alone (unchanged);
        one this run wrote counts every later row as updated."""
        after = dict(record)
        replace(after, values)
        if after == record and id(record) not in self.changed:
            self.counts["unchanged"] += 1
            return
        replace(record, values)
        self.changed.add(id(record))
        self.counts["updated"] += 1


def replace(record: Record, values: Record) -> None:
    """Mapped fields take the row's values; mapped empty fields are cleared; others stay."""
    for name, value in values.items():
        if value is EMPTY:
            record.pop(name, None)
        else:
            record[name] = value


def model_import(spec: ImportSpec, table: Table, state: list[Record], records: Sequence[FileRecord],
                 *, parent: tuple[Table, list[Record]] | None = None, skipped: int = 0) -> Outcome:  # fmt: skip
    """The expected outcome of running `spec` on `table` holding `state` (not modified)."""
    target = spec.target
    overwrite = isinstance(target, CustomTableTarget) and target.mode == "overwrite"
    load = _Load([] if overwrite else [dict(r) for r in state])
    dates = {m.field: m.date_format for m in spec.mapping}
    for record in records:
        try:
            values = _values(spec, table, parent, record, dates)
            _apply(target, table, load, values, parent)
        except _Rejected as rejected:
            load.counts["rejected"] += 1
            load.rejects.append(Reject(record.line, rejected.fields, rejected.reason))
    counts = {"read": len(records), "skipped": skipped, **load.counts}
    if _guard_refuses(spec, counts, len(state), len(load.records) if overwrite else None):
        failed = {**counts, "inserted": 0, "updated": 0, "unchanged": 0}
        return Outcome("failed", [dict(r) for r in state], failed, load.rejects)
    status = "partial" if counts["rejected"] else "succeeded"
    return Outcome(status, load.records, counts, load.rejects)


def _values(spec: ImportSpec, table: Table, parent: tuple[Table, list[Record]] | None,
            record: FileRecord, dates: dict[str, str | None]) -> Record:  # fmt: skip
    if record.cells is None:
        raise _Rejected(["columns"], "wrong number of columns")
    values: Record = {}
    bad: list[BadValue] = []
    for mapping in spec.mapping:
        definition = _definition(table, parent, mapping.field)
        try:
            values[mapping.field] = convert(definition, record.cells[mapping.column], dates[mapping.field])
        except BadValue as error:
            bad.append(error)
    if bad:
        raise _Rejected([b.field for b in bad], "bad value")
    return values


def _definition(table: Table, parent: tuple[Table, list[Record]] | None, name: str) -> TableField:
    if parent is not None and name in LIST_MATCH_COLUMNS and name != "RIID_":
        return parent[0].field(name)  # an extension's match column is a field of its list
    return table.field(name)


def _apply(target: object, table: Table, load: _Load, values: Record,
           parent: tuple[Table, list[Record]] | None) -> None:  # fmt: skip
    if isinstance(target, ListTarget):
        _apply_list(target, load, values)
    elif isinstance(target, ProfileExtensionTarget):
        assert parent is not None
        _apply_extension(target, load, values, parent[1])
    else:
        assert isinstance(target, CustomTableTarget)
        _apply_custom(target.mode, table.primary_key, load, values)


def _require(values: Record, columns: Sequence[str]) -> None:
    missing = [c for c in columns if values.get(c) is EMPTY]
    if missing:
        raise _Rejected(missing, "required")


def _apply_list(target: ListTarget, load: _Load, values: Record) -> None:
    columns = target.match_columns
    _require(values, columns)
    found = {c: [r for r in load.records if r.get(c) == values[c]] for c in columns}
    matched = {id(r): r for rows in found.values() for r in rows}
    if len(matched) > 1 or (matched and not all(found.values())):
        raise _Rejected(columns, "collides with another record")
    if matched:
        record = next(iter(matched.values()))
        if target.update_on_match == "no_update" and id(record) not in load.created:
            load.counts["unchanged"] += 1
        else:
            load.update(record, values)
    elif "RIID_" in columns:
        raise _Rejected(["RIID_"], "no record")
    elif not target.insert_on_no_match:
        raise _Rejected(columns, "no record and insert_on_no_match is off")
    else:
        load.insert({"RIID_": NEW_RIID, **{k: v for k, v in values.items() if v is not EMPTY}})


def _apply_extension(target: ProfileExtensionTarget, load: _Load, values: Record,
                     members: list[Record]) -> None:  # fmt: skip
    column = target.match_column
    _require(values, [column])
    member = next((m for m in members if m.get(column) == values[column]), None)
    if member is None:
        raise _Rejected([column], "no list record")
    own = {k: v for k, v in values.items() if k not in LIST_MATCH_COLUMNS}
    _merge(load, {"RIID_": member["RIID_"], **own}, ("RIID_",))


def _apply_custom(mode: str, key: tuple[str, ...], load: _Load, values: Record) -> None:
    _require(values, key)
    if mode == "append":
        if any(all(r.get(k) == values[k] for k in key) for r in load.records):
            raise _Rejected(key, "primary key exists")
        load.insert({k: v for k, v in values.items() if v is not EMPTY})
        return
    _merge(load, values, key)


def _merge(load: _Load, values: Record, key: tuple[str, ...]) -> None:
    existing = next((r for r in load.records if all(r.get(k) == values[k] for k in key)), None)
    if existing is None:
        load.insert({k: v for k, v in values.items() if v is not EMPTY})
    else:
        load.update(existing, values)


def _guard_refuses(spec: ImportSpec, counts: dict[str, int], before: int, after: int | None) -> bool:
    """`max_reject_percent`: more rejects than allowed; `max_shrink_percent`: an overwrite that would
    leave the table more than that much smaller. Both are limits: reaching one exactly is allowed."""
    guards = spec.guards
    rejects = guards.max_reject_percent
    too_many = rejects is not None and counts["rejected"] * 100 > rejects * counts["read"]
    shrink = guards.max_shrink_percent
    too_small = shrink is not None and after is not None and (before - after) * 100 > shrink * before
    return too_many or too_small


def is_key_type(kind: FieldType) -> bool:
    """Types a generator may use for a key field (values compare exactly after conversion)."""
    return kind in (FieldType.STRING, FieldType.INTEGER, FieldType.EMAIL, FieldType.PHONE)
