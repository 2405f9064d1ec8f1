"""Run identifiers in the guide's form `JobID.RunID` (and `GroupID.RunID` for group runs)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import ValidationFailed


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
        owner, sep, number = text.partition(".")
        if not sep or not owner.isdigit() or not number.isdigit():
            raise ValidationFailed(f"'{text}' is not a run id of the form JobID.RunID", field="run_id")
        return cls(int(owner), int(number))
