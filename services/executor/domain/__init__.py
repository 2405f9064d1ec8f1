"""Executor rules free of I/O: CSV splitting, mapping and coercion, tallies, export and feed formats."""

from services.executor.domain.csvsplit import CsvRecord, CsvSplitter
from services.executor.domain.mapping import (
    ColumnPlan,
    Rejection,
    coerce,
    converter_for,
    key_of,
    map_record,
    plan_columns,
)
from services.executor.domain.tally import (
    Tally,
    percent_milestone,
    reject_percent,
    rejects_csv_lines,
    rejects_path,
    shrink_percent,
)

__all__ = [
    "ColumnPlan",
    "CsvRecord",
    "CsvSplitter",
    "Rejection",
    "Tally",
    "coerce",
    "converter_for",
    "key_of",
    "map_record",
    "percent_milestone",
    "plan_columns",
    "reject_percent",
    "rejects_csv_lines",
    "rejects_path",
    "shrink_percent",
]
