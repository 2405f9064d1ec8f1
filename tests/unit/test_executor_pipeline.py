"""The write pipeline: bounded in-flight batches, last occurrence wins, checkpoints over completed prefixes."""

from __future__ import annotations

import asyncio
from typing import Any

from services.executor.domain import Rejection
from services.executor.domain.adobe import parse_manifest, record_continues, split_hit_line
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.pipeline import Checkpoint, WritePipeline


class SlowTarget:
    """Batches finish out of order (the first is slowest); the 'table' applies writes as they land."""

    dedupe = True

    def __init__(self) -> None:
        self.table: dict[str, int] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        return (row["k"],) if row.get("k") else None

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        return "k", "empty"

    async def write(self, items: list[Item]) -> WriteOutcome:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.05 if self.calls == 1 else 0.001)
        for item in items:
            self.table[item.row["k"]] = item.row["v"]
        self.in_flight -= 1
        outcome = WriteOutcome()
        for item in items:  # each key is new here; earlier occurrences folded into an item update it
            outcome.tally(("insert", *("duplicate" for _ in item.earlier)))
        return outcome


async def run(
    rows: list[dict[str, Any]], resume: Checkpoint | None = None
) -> tuple[SlowTarget, list[Any], Any]:
    target, saved, rejected = SlowTarget(), [], []

    async def on_written(outcome: WriteOutcome) -> None:
        return None

    async def save(checkpoint: Checkpoint) -> None:
        saved.append(checkpoint)

    pipeline = WritePipeline(target, batch_size=2, max_in_flight=2, resume=resume, on_written=on_written,
                             on_rejected=rejected.append, save_checkpoint=save, stop_requested=lambda: False,
                             checkpoint_interval=0)  # fmt: skip
    for line, row in enumerate(rows, start=2):
        await pipeline.add(Item(0, line, row))
    await pipeline.finish()
    return target, [*saved, pipeline.checkpoint()], rejected


async def test_a_key_in_a_slow_earlier_batch_still_ends_with_its_last_value() -> None:
    rows = [{"k": "a", "v": 0}, {"k": "a", "v": 1}, {"k": "b", "v": 1}, {"k": "a", "v": 2}, {"k": "c", "v": 1}, {"k": "d", "v": 1},
            {"k": "a", "v": 3}, {"k": "a", "v": 4}, {"k": "", "v": 0}]  # fmt: skip
    target, checkpoints, rejected = await run(rows)
    assert target.table == {"a": 4, "b": 1, "c": 1, "d": 1}
    assert target.most_in_flight <= 2
    assert rejected == [Rejection(10, "k", "empty", 0)]
    final = checkpoints[-1]
    # Two duplicates folded inside a batch (a folded row counts towards the batch size); the others are
    # across batches (the database target counts those; this fake counts every batch item as an insert).
    assert (final.file, final.line) == (0, 9) and final.duplicates == 2 and final.inserted == 6
    assert final.updated == 2  # each folded occurrence counts as an update of the record it created
    assert [c.line for c in checkpoints] == sorted(c.line for c in checkpoints)


async def test_resuming_skips_what_the_checkpoint_covers() -> None:
    rows = [{"k": f"k{i}", "v": i} for i in range(6)]
    target, checkpoints, _ = await run(rows, resume=Checkpoint(0, 4, inserted=3))
    assert sorted(target.table) == ["k3", "k4", "k5"]
    assert checkpoints[-1].inserted == 6


def test_adobe_manifest_and_hit_lines() -> None:
    manifest = parse_manifest(
        "Datafeed-Manifest-Version: 1.0\n\tLookup-Files: 0\n\tData-Files: 1\n\tTotal-Records: 2\n\n"
        "Data-File: 01-x.tsv.gz\n\tMD5-Digest: " + "a" * 32 + "\n\tFile-Size: 10\n\tRecord-Count: 2\n"
    )
    assert manifest.total_records == 2 and manifest.data_files[0].records == 2
    assert split_hit_line("a\\\tb\tc\\\\d") == ["a\tb", "c\\d"]
    assert record_continues("abc\\") and not record_continues("abc\\\\")


class TwoColumnTarget:
    """A list on two match columns: rows sharing either column's value must not be written at once
    (one of them collides with the other's record, and file order decides which)."""

    dedupe = True
    conflicts_by_column = True

    def __init__(self) -> None:
        self.writing: list[tuple[Any, ...]] = []
        self.overlaps: list[tuple[Any, ...]] = []

    def key(self, row: dict[str, Any]) -> tuple[Any, ...] | None:
        return (row["e"], row["m"])

    def missing_key(self, row: dict[str, Any]) -> tuple[str, str]:
        return "e", "empty"

    async def write(self, items: list[Item]) -> WriteOutcome:
        keys = [(i.row["e"], i.row["m"]) for i in items]
        busy = {(column, value) for key in self.writing for column, value in enumerate(key)}
        self.overlaps += [k for k in keys if any((c, v) in busy for c, v in enumerate(k))]
        self.writing += keys
        await asyncio.sleep(0.01)  # the write's database round trips
        for k in keys:
            self.writing.remove(k)
        return WriteOutcome()


async def test_a_row_sharing_one_match_value_with_a_batch_in_flight_waits_for_it() -> None:
    target = TwoColumnTarget()

    async def on_written(outcome: WriteOutcome) -> None:
        return None

    pipeline = WritePipeline(target, batch_size=1, max_in_flight=4, resume=None, on_written=on_written,
                             on_rejected=lambda r: None, save_checkpoint=None, stop_requested=lambda: False)  # fmt: skip
    for line, (e, m) in enumerate([("a", 1), ("b", 2), ("a", 2), ("c", 3)], start=2):
        await pipeline.add(Item(0, line, {"e": e, "m": m}))
    await pipeline.finish()
    assert target.overlaps == []


async def test_a_key_repeated_without_end_still_fills_batches_of_the_batch_size() -> None:
    """Folded occurrences count towards the batch: memory stays bounded and checkpoints advance."""
    target, checkpoints, _ = await run([{"k": "same", "v": n} for n in range(200)])
    assert target.table == {"same": 199}
    assert target.calls == 100  # batch size 2: each batch is one row and one folded occurrence
    final = checkpoints[-1]
    assert final.inserted + final.updated == 200 and final.duplicates == 100
