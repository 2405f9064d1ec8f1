"""How a run's work ended when it ran to its end: what its `RunFinished` says besides the counts, and
which records the metrics count then. Each kind of work says it of itself (`WorkOutcome`, ports.py)."""

from __future__ import annotations

from dataclasses import dataclass

from services.executor.domain.tally import Tally
from shared.contracts.runs import RejectSample, RunStatus


@dataclass(frozen=True)
class Ending:
    status: RunStatus
    error: str | None = None  # why a run that ended is partial, beyond its rejected records
    rejects_file: str | None = None
    first_rejects: tuple[RejectSample, ...] = ()  # a dry run's, listed in its result


@dataclass
class ImportOutcome:
    tally: Tally
    rejects_file: str | None
    first_rejects: tuple[RejectSample, ...] = ()

    def ending(self) -> Ending:
        return Ending(
            self.tally.final_status(), rejects_file=self.rejects_file, first_rejects=self.first_rejects
        )

    def records_processed(self) -> dict[str, int]:
        """None left to count: an import counts its records as it writes them (`ImportContext.on_records`)."""
        return {}


@dataclass
class ExportOutcome:
    tally: Tally
    destination: str
    failures: list[str]  # the batches a destination refused, the run going on with the others

    def ending(self) -> Ending:
        if not self.failures:
            return Ending(self.tally.final_status())
        first = self.failures[0]
        return Ending(RunStatus.PARTIAL, f"{len(self.failures)} batch(es) failed; first: {first}")

    def records_processed(self) -> dict[str, int]:
        return {"exported": self.tally.inserted, "rejected": self.tally.rejected}
