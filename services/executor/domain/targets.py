"""An import's target table as the job names it: the kind it must be and the fields a mapping may name."""

from __future__ import annotations

from shared.catalog_records import LIST_SYSTEM_FIELDS, TableKind, TableRecord
from shared.contracts.jobs import ImportSpec, ProfileExtensionTarget, TableField
from shared.errors import PermanentError


def require_kind(table: TableRecord, kind: TableKind) -> None:
    if table.kind != kind:
        raise PermanentError(f"table {table.name} is a {table.kind.value} table, not a {kind.value} table")


def mappable_fields(spec: ImportSpec, table: TableRecord) -> tuple[TableField, ...]:
    """The table's fields, with the list's system fields (a list defined without them) and the match
    column a profile extension joins its list by (an extension that does not keep it as a field)."""
    fields = tuple(table.fields)
    if isinstance(spec.target, ProfileExtensionTarget):
        match = next(f for f in LIST_SYSTEM_FIELDS if f.name == spec.target.match_column)
        fields = (*fields, match) if table.field(match.name) is None else fields
    if table.kind == TableKind.LIST and table.field("RIID_") is None:
        fields = (*LIST_SYSTEM_FIELDS, *fields)
    return fields


def mapped_fields(spec: ImportSpec) -> tuple[str, ...]:
    """The fields the job's mapping fills: an update clears those a row leaves empty."""
    return tuple(m.field for m in spec.mapping)
