"""What an import's or an export's outcome tells the run's `RunFinished` and the metrics."""

from __future__ import annotations

from services.executor.domain import Tally
from services.executor.domain.outcomes import Ending, ExportOutcome, ImportOutcome
from shared.contracts.runs import RunStatus


def test_an_import_is_partial_when_it_rejected_records_and_names_its_rejects_file() -> None:
    assert ImportOutcome(Tally(read=3, inserted=3), None).ending() == Ending(RunStatus.SUCCEEDED)
    partial = ImportOutcome(Tally(read=3, inserted=2, rejected=1), "in/a.csv.7.1.rejects.csv")
    assert partial.ending() == Ending(RunStatus.PARTIAL, rejects_file="in/a.csv.7.1.rejects.csv")
    assert partial.records_processed() == {}  # counted as written


def test_an_export_with_failed_batches_is_partial_and_says_which_failed_first() -> None:
    tally = Tally(read=5, inserted=3, rejected=2)
    assert ExportOutcome(Tally(read=5, inserted=5), "out/a.csv", []).ending() == Ending(RunStatus.SUCCEEDED)
    assert ExportOutcome(tally, "https://x", []).ending() == Ending(RunStatus.PARTIAL)
    failed = ExportOutcome(tally, "https://x", ["batch 2 failed: HTTP 500", "batch 3 failed: HTTP 500"])
    assert failed.ending() == Ending(RunStatus.PARTIAL, "2 batch(es) failed; first: batch 2 failed: HTTP 500")
    assert failed.records_processed() == {"exported": 3, "rejected": 2}
