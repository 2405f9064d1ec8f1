"""Run identifiers in the guide's form `JobID.RunID` (and `GroupID.RunID` for group runs)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import ValidationFailed

RUN_ID = re.compile(r"(?P<owner>[1-9][0-9]*)\.(?P<number>[1-9][0-9]*)", re.ASCII)


@dataclass(frozen=True, order=True)
class RunId:
    owner_id: int
    number: int

    def __post_init__(self) -> None:
        if self.owner_id < 1 or self.number < 1:
            raise ValidationFailed(f"run id parts must be positive, got {self.owner_id}.{self.number}")

    def __str__(self) -> str:
        return f"{self.owner_id}.{self.number}"

    @classmethod
    def parse(cls, text: str) -> RunId:
        match = RUN_ID.fullmatch(text)
        if match is None:
            raise ValidationFailed(f"'{text}' is not a run id of the form JobID.RunID", field="run_id")
        return cls(int(match["owner"]), int(match["number"]))
