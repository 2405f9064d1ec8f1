"""Rules of table definitions: lists, profile extension tables and custom tables."""

from __future__ import annotations

from collections.abc import Sequence

from shared.catalog_records import LIST_SYSTEM_FIELDS, TableKind, TableRecord
from shared.contracts.jobs import TableField
from shared.errors import Problems, ValidationFailed

SYSTEM_NAMES = frozenset(f.name for f in LIST_SYSTEM_FIELDS)


def validate_table(name: str, primary_key: tuple[str, ...], field_names: list[str]) -> None:
    duplicates = {n for n in field_names if field_names.count(n) > 1}
    if duplicates:
        raise ValidationFailed(f"duplicate field name(s): {', '.join(sorted(duplicates))}", field="fields")
    missing = [k for k in primary_key if k not in field_names]
    if missing:
        raise ValidationFailed(
            f"primary key field(s) {', '.join(missing)} are not fields of {name}", field="primary_key"
        )


def table_fields(kind: TableKind, user_fields: Sequence[TableField]) -> tuple[TableField, ...]:
    """The stored fields of a new table: a list's system fields come first; extensions are keyed by RIID_."""
    reserved = [f.name for f in user_fields if f.name in SYSTEM_NAMES]
    if kind == TableKind.LIST:
        if reserved:
            raise ValidationFailed(f"{', '.join(reserved)} are system fields of every list", field="fields")
        return (*LIST_SYSTEM_FIELDS, *user_fields)
    if kind == TableKind.PROFILE_EXTENSION:
        redefined = [n for n in reserved if n != "RIID_"]
        if redefined:
            raise ValidationFailed(
                f"a profile extension table may not redefine list system fields ({', '.join(redefined)}); "
                "an import matches on them without that (target.match_column)",
                field="fields",
            )
        riid = LIST_SYSTEM_FIELDS[0]
        return (riid, *(f for f in user_fields if f.name != "RIID_"))
    return tuple(user_fields)


def validate_new_table(
    name: str,
    kind: TableKind,
    primary_key: tuple[str, ...],
    fields: Sequence[TableField],
    parent: TableRecord | None,
) -> None:
    """Every rule is checked: one answer names the fields, the key and the parent list when all are wrong."""
    problems = Problems()
    problems.check(lambda: validate_table(name, primary_key, [f.name for f in fields]))
    if kind == TableKind.CUSTOM and not primary_key:
        problems.add("a custom table needs a primary key of one or two fields", "primary_key")
    if kind != TableKind.CUSTOM and primary_key:
        problems.add(f"a {kind.value} table is keyed by RIID_; give no primary_key", "primary_key")
    if kind == TableKind.PROFILE_EXTENSION and (parent is None or parent.kind != TableKind.LIST):
        problems.add("a profile extension table belongs to an existing list", "parent_list")
    if kind != TableKind.PROFILE_EXTENSION and parent is not None:
        problems.add("only profile extension tables have a parent list", "parent_list")
    problems.raise_any()
