"""Reading a run's numbered log: gaps are shown as "log lines missing", never hidden."""

from __future__ import annotations


def missing_sequences(
    seqs: list[int], *, start: int = 1, last_seq: int | None = None
) -> list[tuple[int, int]]:
    """Gaps in a run's log numbering from `start`, as inclusive ranges.

    `last_seq` is the last number the run announced (in `RunFinished`): lines missing at the end
    count too.
    """
    gaps: list[tuple[int, int]] = []
    expected = start
    for seq in sorted({s for s in seqs if s >= start}):
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = seq + 1
    if last_seq is not None and last_seq >= expected:
        gaps.append((expected, last_seq))
    return gaps
