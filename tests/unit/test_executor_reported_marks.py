"""Results published are marked reported together: one write for every run published within the delay."""

from __future__ import annotations

from collections.abc import Sequence

from services.executor.reporting import ReportedMarks
from tests.support.waiting import eventually


class Marks:
    def __init__(self, failures: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.failures = failures

    async def mark(self, run_ids: Sequence[str]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database away")
        self.calls.append(list(run_ids))


async def test_runs_published_together_are_marked_in_one_write() -> None:
    marks = Marks()
    reported = ReportedMarks(marks.mark, delay=0.05)
    for run_id in ("1.1", "2.1", "3.1"):
        await reported.add(run_id)
    assert reported.holds("2.1")  # the reaper skips it until it is marked
    await eventually(lambda: marks.calls, what="a mark written", timeout=10)
    assert marks.calls == [["1.1", "2.1", "3.1"]]
    assert not reported.holds("2.1")


async def test_a_failed_mark_is_tried_again_and_close_marks_what_is_left() -> None:
    marks = Marks(failures=1)
    reported = ReportedMarks(marks.mark, delay=0.05)
    await reported.add("1.1")
    await eventually(lambda: marks.calls, what="a mark written", timeout=10)
    assert marks.calls == [["1.1"]]  # the first try failed, the next one marked it
    reported.delay = 60
    await reported.add("2.1")
    await reported.close()  # shutdown: marked now, not after the delay
    assert marks.calls == [["1.1"], ["2.1"]]
