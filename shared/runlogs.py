"""A run's numbered log: how its lines are stored in chunks and read back; gaps are shown as "log lines
missing", never hidden."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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


# --- stored chunks -----------------------------------------------------------------------------------
# A run's log lines are stored in chunks: one document per contiguous range of sequence numbers
# written together, `{_id: "run:first", run_id, first, last, at, lines: [...]}`. A document costs the
# database far more than the lines in it, so a flood of lines costs a few documents per run and batch.
# A chunk's `at` is its newest line's time (the TTL index expires a chunk after its last line).

MAX_CHUNK_LINES = 500

Line = dict[str, Any]
Chunk = dict[str, Any]


def chunk_id(run_id: str, first_seq: int) -> str:
    """`run:first` with the number zero-padded: one run's chunks sort by sequence in one `_id` range."""
    return f"{run_id}:{first_seq:010d}"


def chunk_lines(lines: Iterable[Line]) -> list[Chunk]:
    """Chunks of lines (each with `run_id` and `seq`): per run, contiguous ranges of at most
    `MAX_CHUNK_LINES`, each line once (a line repeated in `lines` is kept once)."""
    by_run: dict[str, dict[int, Line]] = {}
    for line in lines:
        by_run.setdefault(line["run_id"], {}).setdefault(line["seq"], line)
    chunks: list[Chunk] = []
    for run_id, by_seq in by_run.items():
        current: list[Line] = []
        for seq in sorted(by_seq):
            if current and (seq != current[-1]["seq"] + 1 or len(current) == MAX_CHUNK_LINES):
                chunks.append(_chunk(run_id, current))
                current = []
            current.append({k: v for k, v in by_seq[seq].items() if k != "run_id"})
        chunks.append(_chunk(run_id, current))
    return chunks


def chunk_rest(chunk: Chunk, stored: Iterable[tuple[int, int]]) -> list[Chunk]:
    """What is left of a chunk whose `_id` is taken, given the (first, last) ranges of its run's stored
    chunks that start within it: its lines outside them, as chunks. None of these starts where a
    stored chunk starts (that line is stored), so they do not collide again."""
    covered = list(stored)
    rest = [
        line for line in chunk["lines"] if not any(first <= line["seq"] <= last for first, last in covered)
    ]
    return chunk_lines({**line, "run_id": chunk["run_id"]} for line in rest)


def _chunk(run_id: str, lines: list[Line]) -> Chunk:
    first, last = lines[0]["seq"], lines[-1]["seq"]
    return {
        "_id": chunk_id(run_id, first),
        "run_id": run_id,
        "first": first,
        "last": last,
        "at": max(line["at"] for line in lines),
        "lines": lines,
    }


def lookback_start(after: int) -> int:
    """The lowest first line of a chunk that can hold lines after `after` (chunks are contiguous)."""
    return max(after + 2 - MAX_CHUNK_LINES, 0)


class LinePage:
    """The first `limit` lines after `after` from chunks read in `_id` (first line) order.

    A line may be stored twice (a redelivery regrouped into another chunk); it is shown once. Chunks
    may overlap, so a line is only certain to be among the first `limit` once `limit` lines lie below
    the next chunk's first line: `wants` says when reading can stop.
    """

    def __init__(self, after: int, limit: int) -> None:
        self.after = after
        self.limit = limit
        self._by_seq: dict[int, Line] = {}

    def wants(self, chunk: Chunk) -> bool:
        if len(self._by_seq) < self.limit:
            return True
        below = sum(1 for seq in self._by_seq if seq < chunk["first"])
        return below < self.limit

    def add(self, chunk: Chunk) -> None:
        for line in chunk["lines"]:
            if line["seq"] > self.after:
                self._by_seq.setdefault(line["seq"], line)

    def lines(self) -> list[Line]:
        return [self._by_seq[seq] for seq in sorted(self._by_seq)[: self.limit]]
