"""Counts of a run, the rejects file's lines, progress milestones."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.executor.domain.mapping import Rejection
from shared.contracts.runs import RunCounts, RunStatus


@dataclass
class Tally:
    """Counts of a run as it goes (`rejections` holds those not yet saved; the store keeps them all)."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    unchanged: int = 0  # matched a record and left it as it was (update_on_match: no_update)
    skipped: int = 0  # blank lines: not records, not in `read`
    duplicates: int = 0  # later occurrences of a key in the file (counted in `updated`): the last wins
    bytes_read: int = 0
    exported: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.rejections.append(rejection)

    def take_rejections(self) -> list[Rejection]:
        taken, self.rejections = self.rejections, []
        return taken

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    def counts(self) -> RunCounts:
        return RunCounts(
            read=self.read,
            inserted=self.inserted,
            updated=self.updated,
            rejected=self.rejected,
            unchanged=self.unchanged,
            skipped=self.skipped,
        )

    def nothing_written(self) -> None:
        """A failed run wrote nothing a user can see (the guard refused, the file was bad)."""
        self.inserted = self.updated = self.unchanged = 0

    def final_status(self) -> RunStatus:
        return RunStatus.PARTIAL if self.rejected else RunStatus.SUCCEEDED


def rejects_csv_lines(rejections: Iterable[Rejection]) -> Iterable[list[str]]:
    yield ["line", "field", "reason"]
    for r in rejections:
        yield [str(r.line), r.field, r.reason]


def rejects_path(source_path: str, run_id: str) -> str:
    return f"{source_path}.{run_id}.rejects.csv"


def percent_milestone(done: int, total: int | None, last: int) -> int | None:
    """The next 10 % milestone crossed, if any (for the run log)."""
    if not total:
        return None
    reached = min(100, (done * 100 // total) // 10 * 10)
    return reached if reached > last else None


def reject_percent(rejected: int, read: int) -> float:
    return 100.0 * rejected / read if read else 0.0


def shrink_percent(before: int, after: int) -> float:
    return 100.0 * (before - after) / before if before > after else 0.0
