"""Batched ingest without broker or database: flush by size or delay, ack only after the write."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from services.logsink.batching import Batcher
from services.logsink.domain import Keyed, RunWrites
from services.logsink.ports import Written
from services.logsink.service import LogsinkService
from shared.errors import RetryableError
from tests.unit.factories import T0, run_finished, run_log, run_progress, run_started


class Recorder:
    def __init__(self, fail_times: int = 0, error: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_times = fail_times
        self.error = error or RetryableError("database down")
        self.gate: asyncio.Event | None = None

    async def write(self, items: list[int]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_times > 0:
            self.fail_times -= 1
            raise self.error
        self.batches.append(list(items))


async def test_a_full_batch_is_written_at_once() -> None:
    recorder = Recorder()
    batcher: Batcher[int] = Batcher(recorder.write, max_size=3, max_delay=60)
    await batcher.start()
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in range(6))), 5)
    await batcher.stop()

    assert recorder.batches == [[0, 1, 2], [3, 4, 5]]


async def test_a_partial_batch_is_written_after_the_delay() -> None:
    recorder = Recorder()
    batcher: Batcher[int] = Batcher(recorder.write, max_size=100, max_delay=0.05)
    await batcher.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(asyncio.gather(batcher.submit(1), batcher.submit(2)), 5)
    waited = loop.time() - started
    await batcher.stop()

    assert recorder.batches == [[1, 2]]
    assert 0.04 <= waited < 1.0


async def test_submit_returns_only_after_the_write() -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    batcher: Batcher[int] = Batcher(recorder.write, max_size=1, max_delay=0.01)
    await batcher.start()
    pending = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0.1)
    assert not pending.done()  # the handler (and so the ack) waits for the write

    recorder.gate.set()
    await asyncio.wait_for(pending, 5)
    await batcher.stop()
    assert recorder.batches == [[1]]


async def test_transient_failures_are_retried() -> None:
    recorder = Recorder(fail_times=2)
    written: list[tuple[list[int], float]] = []
    batcher: Batcher[int] = Batcher(
        recorder.write,
        max_size=2,
        max_delay=0.01,
        retry_backoff=0.001,
        on_written=lambda items, seconds: written.append((items, seconds)),
    )
    await batcher.start()
    await asyncio.wait_for(asyncio.gather(batcher.submit(1), batcher.submit(2)), 5)
    await batcher.stop()

    assert recorder.batches == [[1, 2]]
    assert [items for items, _ in written] == [[1, 2]]


async def test_a_batch_that_cannot_be_written_fails_every_waiting_event() -> None:
    recorder = Recorder(fail_times=10)
    batcher: Batcher[int] = Batcher(
        recorder.write, max_size=2, max_delay=0.01, retries=2, retry_backoff=0.001
    )
    await batcher.start()
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    await batcher.stop()

    assert all(isinstance(result, RetryableError) for result in results)  # nacked, redelivered later
    assert recorder.batches == []


async def test_stop_writes_what_is_pending() -> None:
    recorder = Recorder()
    batcher: Batcher[int] = Batcher(recorder.write, max_size=100, max_delay=60)
    await batcher.start()
    waiting = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0.01)

    await asyncio.wait_for(batcher.stop(), 5)

    assert recorder.batches == [[0, 1, 2]]
    assert all(w.done() and w.exception() is None for w in waiting)
    with pytest.raises(RetryableError):
        await batcher.submit(4)


# --- the service's batch: applied once, duplicates counted -----------------------------------------


class FakeRecords:
    """Keeps what it is given; a run whose id is in `refuse` refuses every change (a redelivery)."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], dict[str, Any]] = {}
        self.runs: list[RunWrites] = []
        self.group_runs: list[Keyed] = []
        self.refuse: set[str] = set()

    async def write(
        self,
        *,
        logs: list[dict[str, Any]],
        runs: list[RunWrites],
        group_runs: list[Keyed],
    ) -> Written:
        stored = len(self.logs)
        self.logs.update({(line["run_id"], line["seq"]): line for line in logs})
        self.runs += runs
        self.group_runs += group_runs
        refused = Counter(
            kind for w in runs if w.run_id in self.refuse for kind, (_, _, upsert) in w.alone if upsert
        )
        return Written(len(logs) - (len(self.logs) - stored), refused)


class FakeMetrics:
    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.dups: dict[str, int] = {}
        self.batches: list[float] = []

    def recorded(self, kind: str, count: int) -> None:
        self.events[kind] = self.events.get(kind, 0) + count

    def duplicates(self, kind: str, count: int) -> None:
        self.dups[kind] = self.dups.get(kind, 0) + count

    def batch_written(self, seconds: float) -> None:
        self.batches.append(seconds)


async def test_a_repeat_in_a_batch_is_dropped_and_refused_changes_are_counted_as_duplicates() -> None:
    records, metrics = FakeRecords(), FakeMetrics()
    service = LogsinkService(records, metrics, batch_size=10, flush_interval=0.01)
    finished = run_finished("7.1")
    await service.write_batch([*map(_plan, [run_started("7.1"), finished, finished])])
    (writes,) = records.runs
    assert writes.together is not None  # both changes of the run in one statement
    records.refuse.add("7.1")
    await service.write_batch([_plan(finished)])  # redelivered after its batch was written: refused

    assert metrics.events == {"run.started": 1, "run.finished": 1}
    assert metrics.dups == {"run.finished": 2}


async def test_log_lines_are_stored_once_and_duplicates_counted() -> None:
    records, metrics = FakeRecords(), FakeMetrics()
    service = LogsinkService(records, metrics)
    await service.write_batch([_plan(run_log("7.1", seq)) for seq in (1, 2, 3)])
    await service.write_batch([_plan(run_log("7.1", seq)) for seq in (3, 4)])

    assert sorted(records.logs) == [("7.1", seq) for seq in (1, 2, 3, 4)]
    assert metrics.events == {"run.log": 4}
    assert metrics.dups == {"run.log": 1}


async def test_only_the_newest_progress_per_run_is_written() -> None:
    records, metrics = FakeRecords(), FakeMetrics()
    service = LogsinkService(records, metrics)
    events = [run_progress("7.1", at=T0 + timedelta(seconds=s)) for s in (1, 3, 2)]
    await service.write_batch([_plan(e) for e in events])

    (writes,) = records.runs
    assert writes.together is not None
    assert writes.together[1]["$set"]["progress"]["at"] == T0 + timedelta(seconds=3)
    assert metrics.events == {"run.progress": 3}


async def test_record_waits_for_the_batch_and_counts_it() -> None:
    records, metrics = FakeRecords(), FakeMetrics()
    service = LogsinkService(records, metrics, batch_size=2, flush_interval=0.01)
    await service.start()
    await asyncio.wait_for(
        asyncio.gather(*(service.record(run_log("7.1", s).model_dump(mode="json")) for s in (1, 2, 3))), 5
    )
    await service.stop()

    assert len(records.logs) == 3
    assert len(metrics.batches) == 2


def _plan(event: Any) -> Any:
    from services.logsink.domain import plan

    return plan(event.model_dump(mode="json"))


# --- added without waiting: the consumer learns of each batch's outcome -----------------------------


async def test_added_items_are_settled_after_their_batch_is_written_in_arrival_order() -> None:
    recorder = Recorder()
    settled: list[tuple[list[int], Exception | None]] = []
    written_when_settled: list[int] = []

    async def on_settled(items: list[int], error: Exception | None) -> None:
        written_when_settled.append(len(recorder.batches))
        settled.append((items, error))

    batcher: Batcher[int] = Batcher(recorder.write, max_size=2, max_delay=0.01, on_settled=on_settled)
    await batcher.start()
    for i in range(5):
        batcher.add(i)
    await asyncio.wait_for(batcher.stop(), 5)

    assert recorder.batches == [[0, 1], [2, 3], [4]]
    assert settled == [([0, 1], None), ([2, 3], None), ([4], None)]
    assert written_when_settled == [1, 2, 3]  # each batch settled only after it was written


async def test_a_batch_that_cannot_be_written_is_settled_with_the_error() -> None:
    recorder = Recorder(fail_times=10)
    settled: list[tuple[list[int], Exception | None]] = []

    async def on_settled(items: list[int], error: Exception | None) -> None:
        settled.append((items, error))

    batcher: Batcher[int] = Batcher(
        recorder.write, max_size=2, max_delay=0.01, retries=2, retry_backoff=0.001, on_settled=on_settled
    )
    await batcher.start()
    batcher.add(1)
    batcher.add(2)
    await asyncio.wait_for(batcher.stop(), 5)

    assert [items for items, _ in settled] == [[1, 2]]
    assert isinstance(settled[0][1], RetryableError)  # the consumer nacks them with requeue
    with pytest.raises(RetryableError):
        batcher.add(3)  # closed: the consumer requeues what arrives while it stops


async def test_the_service_settles_receipts_after_the_write() -> None:
    records, metrics = FakeRecords(), FakeMetrics()
    settled: list[tuple[list[Any], Exception | None]] = []

    async def settle(receipts: list[Any], error: Exception | None) -> None:
        assert len(records.logs) == sum(len(r) for r, _ in settled) + len(receipts)
        settled.append((receipts, error))

    service = LogsinkService(records, metrics, settle=settle, batch_size=2, flush_interval=0.01)
    await service.start()
    for seq in (1, 2, 3):
        service.accept(_plan(run_log("7.1", seq)), f"tag-{seq}")
    await asyncio.wait_for(service.stop(), 5)

    assert settled == [(["tag-1", "tag-2"], None), (["tag-3"], None)]
