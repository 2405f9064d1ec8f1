"""How a run's log lines are stored in chunks and read back a page at a time (`shared.runlogs`)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from shared.runlogs import (
    MAX_CHUNK_LINES,
    LinePage,
    chunk_id,
    chunk_lines,
    chunk_rest,
    lookback_start,
)
from tests.unit.factories import T0


def line(run_id: str, seq: int, seconds: int = 0) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "level": "info", "message": f"line {seq}", "fields": {}, "at": T0 + timedelta(seconds=seconds)}  # fmt: skip


def spans(chunks: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(c["run_id"], c["first"], c["last"]) for c in chunks]


def test_chunk_ids_are_unique_per_run_and_first_line_and_sort_by_it() -> None:
    pairs = [(f"{job}.{run}", seq) for job in (1, 11, 12) for run in (1, 2, 21) for seq in (1, 2, 12, 112)]
    assert len({chunk_id(run_id, seq) for run_id, seq in pairs}) == len(pairs)

    ids = [chunk_id("7.1", seq) for seq in (1, 2, 9, 10, 100)]
    assert ids == sorted(ids)
    assert all(chunk_id("7.1", seq) < "7.1;" for seq in (0, 10**9))  # one run's chunks: one `_id` range


def test_lines_are_chunked_per_run_in_contiguous_ranges() -> None:
    lines = [line("7.1", s) for s in (3, 1, 2, 5, 6)] + [line("8.1", 1)] + [line("7.1", 9, seconds=4)]

    chunks = chunk_lines(lines)

    assert spans(chunks) == [("7.1", 1, 3), ("7.1", 5, 6), ("7.1", 9, 9), ("8.1", 1, 1)]
    assert [ln["seq"] for ln in chunks[0]["lines"]] == [1, 2, 3]
    assert chunks[0]["_id"] == chunk_id("7.1", 1)
    assert chunks[2]["at"] == T0 + timedelta(seconds=4)  # the newest line's time, for the TTL index
    assert "run_id" not in chunks[0]["lines"][0]  # said once per chunk


def test_a_line_repeated_in_one_batch_is_stored_once() -> None:
    chunks = chunk_lines([line("7.1", 1), line("7.1", 2), line("7.1", 1)])

    assert spans(chunks) == [("7.1", 1, 2)]


def test_a_long_range_is_split_at_the_chunk_size() -> None:
    chunks = chunk_lines(line("7.1", s) for s in range(1, 2 * MAX_CHUNK_LINES + 2))

    assert spans(chunks) == [
        ("7.1", 1, MAX_CHUNK_LINES),
        ("7.1", MAX_CHUNK_LINES + 1, 2 * MAX_CHUNK_LINES),
        ("7.1", 2 * MAX_CHUNK_LINES + 1, 2 * MAX_CHUNK_LINES + 1),
    ]


def test_the_rest_of_a_taken_chunk_leaves_out_the_stored_lines_and_the_stored_starts() -> None:
    (chunk,) = chunk_lines(line("7.1", s) for s in range(1, 11))

    rest = chunk_rest(chunk, [(1, 3), (6, 7)])

    assert spans(rest) == [("7.1", 4, 5), ("7.1", 8, 10)]
    assert chunk_rest(chunk, [(1, 12)]) == []


def test_lookback_reaches_every_chunk_that_can_hold_a_later_line() -> None:
    for after in (0, 1, MAX_CHUNK_LINES, 5 * MAX_CHUNK_LINES + 7):
        start = lookback_start(after)
        assert start + MAX_CHUNK_LINES - 1 >= after + 1  # a chunk starting here can hold after + 1
        assert start == 0 or (start - 1) + MAX_CHUNK_LINES - 1 <= after  # one starting before cannot


def test_a_page_stops_only_when_no_later_chunk_can_hold_an_earlier_line() -> None:
    chunks = sorted(
        chunk_lines([line("7.1", s) for s in (1, 2, 3, 4)])
        + chunk_lines([line("7.1", s) for s in (2, 3)])  # a redelivery regrouped: overlaps
        + chunk_lines([line("7.1", s) for s in (5, 6)]),
        key=lambda c: str(c["_id"]),
    )
    page = LinePage(after=1, limit=3)
    read = 0
    for chunk in chunks:
        if not page.wants(chunk):
            break
        page.add(chunk)
        read += 1

    assert [ln["seq"] for ln in page.lines()] == [2, 3, 4]
    assert read == 2  # the chunk starting at 5 cannot hold a line below 5


def test_any_redelivery_grouping_reads_back_every_line_once_in_order() -> None:
    """Lines stored in random, overlapping groupings (as redeliveries regroup them), with collisions
    handled as the repository does, read back page by page: each line once, in order, none lost."""
    rng = random.Random(7)
    for _ in range(50):
        total = rng.randint(1, 60)
        stored: dict[str, dict[str, Any]] = {}
        for _ in range(rng.randint(1, 6)):
            seqs = sorted(rng.sample(range(1, total + 1), rng.randint(1, total)))
            pending = chunk_lines(line("7.1", s) for s in seqs)
            while pending:
                taken = [c for c in pending if c["_id"] in stored]
                stored.update({c["_id"]: c for c in pending if c["_id"] not in stored})
                pending = [
                    rest
                    for c in taken
                    for rest in chunk_rest(
                        c,
                        [(s["first"], s["last"]) for s in stored.values() if c["first"] <= s["first"] <= c["last"]],
                    )
                ]  # fmt: skip
        expected = sorted({ln["seq"] for c in stored.values() for ln in c["lines"]})
        limit, after, seen = rng.randint(1, 7), 0, []
        while True:
            page = LinePage(after, limit)
            in_range = sorted(
                (c for c in stored.values() if c["first"] >= lookback_start(after) and c["last"] > after),
                key=lambda c: str(c["_id"]),
            )
            for chunk in in_range:
                if not page.wants(chunk):
                    break
                page.add(chunk)
            lines = page.lines()
            if not lines:
                break
            seen += [ln["seq"] for ln in lines]
            after = lines[-1]["seq"]
        assert seen == expected
