"""A batch's rows as a target receives them (`Item`) and what writing them did (`WriteOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.executor.domain import Rejection
from services.executor.importers.changes import Position


@dataclass(frozen=True)
class Item:
    file: int
    line: int
    row: dict[str, Any]
    raw: str = ""  # the record as in the file (cut), kept with a reject
    earlier: tuple[Item, ...] = ()  # earlier occurrences of the key in the same batch, folded into this

    @property
    def start(self) -> Position:
        """Where the key's first occurrence in the batch is."""
        first = self.earlier[0] if self.earlier else self
        return (first.file, first.line)


@dataclass
class WriteOutcome:
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    unchanged: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def add(self, other: WriteOutcome) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.duplicates += other.duplicates
        self.unchanged += other.unchanged
        self.rejections += other.rejections

    def tally(self, kinds: tuple[str, ...]) -> None:
        """Count the occurrences of one key (`changes.plan_item`), each one a row read.

        `insert`: the row created the record; `update`: it changed a record that existed before the run;
        `duplicate`: a later occurrence of a key this run wrote already (counted updated); `unchanged`: the
        record existed and was left as it was (no_update, or it held the row's values already).
        """
        for kind in kinds:
            if kind == "unchanged":
                self.unchanged += 1
            elif kind == "insert":
                self.inserted += 1
            else:
                self.updated += 1
                self.duplicates += kind == "duplicate"

    def reject(self, item: Item, field_name: str, reason: str) -> None:
        """Reject an item and the earlier occurrences of its key folded into it (the same reason holds)."""
        for one in (*item.earlier, item):
            self.rejections.append(Rejection(one.line, field_name, reason, one.file, record=one.raw))
