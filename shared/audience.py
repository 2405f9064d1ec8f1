"""Indexes of the audience collections: one definition, whoever creates them (catalog or executor).

A custom table is unique on its primary key; lists and profile extension tables on `RIID_`; a
list also on each match column (sparse: a record may lack it).
"""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from shared.catalog_records import LIST_MATCH_COLUMNS, TableKind, TableRecord


def key_index(table: TableRecord) -> IndexModel | None:
    if table.kind == TableKind.CUSTOM:
        if not table.primary_key:
            return None
        return IndexModel([(name, ASCENDING) for name in table.primary_key], unique=True, name="primary_key")
    return IndexModel([("RIID_", ASCENDING)], unique=True, name="riid")


def match_index(column: str) -> IndexModel:
    return IndexModel([(column, ASCENDING)], unique=True, sparse=True, name=f"match_{column}")


def table_indexes(table: TableRecord) -> list[IndexModel]:
    """Every unique index of a new table."""
    key = key_index(table)
    indexes = [key] if key is not None else []
    if table.kind == TableKind.LIST:
        indexes += [match_index(column) for column in LIST_MATCH_COLUMNS[1:]]
    return indexes
