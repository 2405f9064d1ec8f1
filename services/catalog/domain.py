"""Catalog rules, free of I/O: what makes a connection, a table or a job valid."""

from __future__ import annotations

import hashlib
from enum import IntEnum

from shared.catalog_records import ConnectionRecord, TableRecord
from shared.contracts.jobs import ImportSpec, SftpSource
from shared.errors import Forbidden, ValidationFailed
from shared.paths import resolve_inside


class Role(IntEnum):
    """viewer < operator < admin: each role may do what the ones below it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValidationFailed(f"unknown role '{name}' (viewer, operator, admin)", field="role") from None


def require_role(actual: Role, needed: Role) -> None:
    if actual < needed:
        raise Forbidden(f"this action needs the {needed.name.lower()} role")


def hash_token(token: str) -> str:
    """Tokens are stored hashed; a high-entropy random token needs no slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def validate_table(name: str, primary_key: tuple[str, ...], field_names: list[str]) -> None:
    duplicates = {n for n in field_names if field_names.count(n) > 1}
    if duplicates:
        raise ValidationFailed(f"duplicate field name(s): {', '.join(sorted(duplicates))}", field="fields")
    missing = [k for k in primary_key if k not in field_names]
    if missing:
        raise ValidationFailed(
            f"primary key field(s) {', '.join(missing)} are not fields of {name}", field="primary_key"
        )


def validate_import(spec: ImportSpec, table: TableRecord, connection: ConnectionRecord) -> None:
    """An import job must map onto its table and read inside its connection's base directory."""
    source = spec.source
    resolve_inside(
        connection.base_dir, source.path if isinstance(source, SftpSource) else source.manifest_path
    )
    for i, mapping in enumerate(spec.mapping):
        if table.field(mapping.field) is None:
            raise ValidationFailed(
                f"field '{mapping.field}' is not a field of table {table.name}",
                field=f"spec.mapping[{i}].field",
            )
    targets = [m.field for m in spec.mapping]
    if len(set(targets)) != len(targets):
        raise ValidationFailed("a field is mapped more than once", field="spec.mapping")
    columns = [m.column for m in spec.mapping]
    if len(set(columns)) != len(columns):
        raise ValidationFailed("a column is mapped more than once", field="spec.mapping")
    unmapped_keys = [k for k in table.primary_key if k not in targets]
    if unmapped_keys:
        raise ValidationFailed(
            f"the mapping must fill the primary key field(s) {', '.join(unmapped_keys)}", field="spec.mapping"
        )
