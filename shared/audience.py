"""Indexes of the audience collections, the same wherever they are created (catalog or executor)."""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from shared.catalog_records import LIST_MATCH_COLUMNS, TableKind, TableRecord


def table_indexes(table: TableRecord) -> list[IndexModel]:
    """Unique on the table's key; on a list, also unique on each match column where present."""
    if table.kind == TableKind.CUSTOM:
        keys = [(name, ASCENDING) for name in table.primary_key]
        return [IndexModel(keys, unique=True, name="primary_key")]
    indexes = [IndexModel([("RIID_", ASCENDING)], unique=True, name="riid")]
    if table.kind == TableKind.LIST:
        for column in LIST_MATCH_COLUMNS[1:]:
            indexes.append(
                IndexModel(
                    [(column, ASCENDING)],
                    unique=True,
                    name=f"match_{column.lower().strip('_')}",
                    partialFilterExpression={column: {"$exists": True}},
                )
            )
    return indexes
