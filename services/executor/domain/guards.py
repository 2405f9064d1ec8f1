"""An import's guards, decided from numbers: what a job says a run must not write (or swap in).

A verdict carries the run log's line whichever way it goes and the run's error when it fails; the
importer logs it, then enforces it. No I/O here: the counts come from the passes that read the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.executor.domain.tally import reject_percent, shrink_percent
from services.executor.errors import GuardFailed
from shared.contracts.jobs import CustomTableTarget, ImportSpec, SftpSource


@dataclass(frozen=True)
class GuardVerdict:
    guard: str
    passed: bool
    percent: float
    summary: str  # the run log's line, passed or failed
    refusal: str  # the run's error when it failed

    def enforce(self) -> None:
        if not self.passed:
            raise GuardFailed(self.refusal)


def reject_guard(rejected: int, read: int, limit: float) -> GuardVerdict:
    """`max_reject_percent`: the share of the records read that the load would reject."""
    percent = reject_percent(rejected, read)
    return _percent_guard(
        "max_reject_percent", percent, limit, counts=f"{rejected} of {read} records rejected",
        figure=f"{percent:.1f} %", excess=f"{percent:.1f} % of the records are rejected",
    )  # fmt: skip


def shrink_guard(table: str, before: int, after: int, limit: float) -> GuardVerdict:
    """`max_shrink_percent`: how much smaller an overwrite's new contents are than the table's."""
    shrink = shrink_percent(before, after)
    return _percent_guard(
        "max_shrink_percent", shrink, limit, counts=f"{before} → {after} rows", figure=f"{shrink:.1f} % smaller",
        excess=f"the overwrite would shrink {table} by {shrink:.1f} % ({before} → {after} rows)",
    )  # fmt: skip


def count_file_check(file_name: str, expected: int, found: int) -> str:
    """The run log's line when a file holds the records its count file says; `GuardFailed` otherwise."""
    if expected != found:
        raise GuardFailed(f"count file of {file_name} says {expected} records, the file holds {found}")
    return f"count file of {file_name} matches: {found} records"


def is_overwrite(spec: ImportSpec) -> bool:
    return isinstance(spec.target, CustomTableTarget) and spec.target.mode == "overwrite"


def needs_validation_pass(spec: ImportSpec) -> bool:
    """Count files and the reject guard decide before a load that writes the table, in a pass that
    writes nothing. An overwrite decides before its swap instead: its load writes a new collection."""
    counted = isinstance(spec.source, SftpSource) and spec.source.count_file
    guarded = spec.guards.max_reject_percent is not None
    return not is_overwrite(spec) and (counted or guarded)


def _percent_guard(
    guard: str, percent: float, limit: float, *, counts: str, figure: str, excess: str
) -> GuardVerdict:
    """A guard that holds while a percentage stays within its limit (the limit itself passes)."""
    passed = percent <= limit
    said = "passed" if passed else "failed"
    summary = f"guard {guard} {said}: {counts} ({figure}, limit {limit:g} %)"
    return GuardVerdict(guard, passed, percent, summary, f"{excess}, more than the limit of {limit:g} %")
