"""A run's rejected records as the API shows them, read from the executor's `run_rejects`.

The executor is the collection's only writer (DESIGN.md §1); the catalog pages through it in file
and line order, by offset or by a `FILE:LINE` cursor that stays cheap however many rejects a run has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from shared.errors import ValidationFailed

CURSOR = re.compile(r"^([1-9][0-9]{0,5}):([0-9]{1,12})$")
CURSOR_PATTERN = CURSOR.pattern


class RunReject(BaseModel):
    file: int = Field(
        description="Which file of the run: 1 for the first (a pattern or a feed may read several)."
    )
    line: int = Field(description="Line of that file where the record starts (a header row is line 1).")
    field: str = Field(
        description="What was refused: a field, `columns` (wrong column count) or the match column(s)."
    )
    reason: str
    record: str = Field(
        description="The record as in the file, cut after 1,000 characters (then ending `… [cut: N characters]`)."
    )


class RunRejectPage(BaseModel):
    run_id: str
    items: list[RunReject]
    total: int = Field(description="Rejected records of the run in all (kept 14 days).")
    offset: int
    limit: int
    next_after: str | None = Field(
        description="Pass as `after` to read the next page (`FILE:LINE`); null on the last page."
    )
    next: str | None = Field(default=None, description="The next page's relative URL; null on the last page.")
    prev: str | None = Field(
        default=None, description="The previous page's relative URL when paging by offset; null otherwise."
    )


@dataclass(frozen=True)
class RejectCursor:
    """A position in a run's rejects: after this (file, line); `file` 0-based as the executor stores it."""

    file: int
    line: int

    @classmethod
    def parse(cls, text: str) -> RejectCursor:
        match = CURSOR.match(text)
        if match is None:
            raise ValidationFailed("after must be FILE:LINE, e.g. 1:57", field="after")
        return cls(int(match[1]) - 1, int(match[2]))

    def text(self) -> str:
        return f"{self.file + 1}:{self.line}"


def reject_view(doc: dict[str, Any]) -> RunReject:
    return RunReject(
        file=int(doc.get("file", 0)) + 1,
        line=int(doc["line"]),
        field=str(doc.get("field") or ""),
        reason=str(doc.get("reason") or ""),
        record=str(doc.get("record") or ""),  # rejects stored before records were kept have none
    )
