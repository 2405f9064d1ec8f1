"""Batches written at once (`max_in_flight`): the next batch is written while one waits, none is lost."""

from __future__ import annotations

import asyncio

import pytest

from services.logsink.batching import Batcher
from shared.errors import RetryableError


class GatedWriter:
    """Holds each batch's write until its gate opens; tells which batches are being written."""

    def __init__(self) -> None:
        self.writing: list[list[int]] = []
        self.gates: dict[int, asyncio.Event] = {}
        self.started = asyncio.Condition()

    async def write(self, items: list[int]) -> None:
        gate = self.gates.setdefault(items[0], asyncio.Event())
        async with self.started:
            self.writing.append(list(items))
            self.started.notify_all()
        await gate.wait()

    async def until_writing(self, count: int) -> None:
        async with self.started:
            await self.started.wait_for(lambda: len(self.writing) >= count)

    def release(self, first: int) -> None:
        self.gates.setdefault(first, asyncio.Event()).set()


async def test_two_batches_are_written_at_once_and_settle_in_any_order() -> None:
    writer, settled = GatedWriter(), []

    async def on_settled(items: list[int], error: Exception | None) -> None:
        settled.append((items, error))

    batcher: Batcher[int] = Batcher(
        writer.write, max_size=2, max_delay=60, max_in_flight=2, on_settled=on_settled
    )
    await batcher.start()
    for item in range(6):
        batcher.add(item)
    await asyncio.wait_for(writer.until_writing(2), 5)
    assert writer.writing == [[0, 1], [2, 3]]  # the third batch waits for a free slot
    assert batcher.pending == 2

    writer.release(2)  # the later batch finishes first
    await asyncio.wait_for(writer.until_writing(3), 5)
    assert writer.writing[2] == [4, 5]
    writer.release(0)
    writer.release(4)
    await asyncio.wait_for(batcher.stop(), 5)
    assert settled == [([2, 3], None), ([0, 1], None), ([4, 5], None)]


async def test_stop_waits_for_every_batch_being_written() -> None:
    writer = GatedWriter()
    batcher: Batcher[int] = Batcher(writer.write, max_size=1, max_delay=60, max_in_flight=2)
    await batcher.start()
    waiting = [asyncio.ensure_future(batcher.submit(item)) for item in (1, 2)]
    await asyncio.wait_for(writer.until_writing(2), 5)
    stopping = asyncio.ensure_future(batcher.stop())
    await asyncio.sleep(0)
    assert not stopping.done() and not any(w.done() for w in waiting)
    writer.release(1)
    writer.release(2)
    await asyncio.wait_for(stopping, 5)
    assert all(w.done() and w.exception() is None for w in waiting)


async def test_one_in_flight_keeps_filling_the_next_batch_while_one_is_written() -> None:
    writer = GatedWriter()
    batcher: Batcher[int] = Batcher(writer.write, max_size=3, max_delay=0.01)
    await batcher.start()
    batcher.add(0)
    await asyncio.wait_for(writer.until_writing(1), 5)
    for item in (1, 2, 3, 4):
        batcher.add(item)
    writer.release(0)
    await asyncio.wait_for(writer.until_writing(2), 5)
    assert writer.writing == [[0], [1, 2, 3]]  # cut only once the slot was free
    writer.release(1)
    writer.release(4)
    await asyncio.wait_for(batcher.stop(), 5)
    assert writer.writing == [[0], [1, 2, 3], [4]]
    with pytest.raises(RetryableError):  # a stopped batcher takes no more items
        batcher.add(5)


async def test_while_one_batch_is_written_the_next_is_cut_only_when_full() -> None:
    writer = GatedWriter()
    batcher: Batcher[int] = Batcher(writer.write, max_size=3, max_delay=0.01, max_in_flight=2)
    await batcher.start()
    batcher.add(0)
    await asyncio.wait_for(writer.until_writing(1), 5)  # nothing being written: cut by the delay
    batcher.add(1)
    batcher.add(2)
    await asyncio.sleep(0.05)  # past the delay: a partial batch still waits for the write or a full one
    assert writer.writing == [[0]] and batcher.pending == 2
    batcher.add(3)
    await asyncio.wait_for(writer.until_writing(2), 5)
    assert writer.writing == [[0], [1, 2, 3]]
    batcher.add(4)
    writer.release(0)  # [1, 2, 3] is still being written: the partial [4] waits for it
    writer.release(1)
    await asyncio.wait_for(writer.until_writing(3), 5)
    writer.release(4)
    await asyncio.wait_for(batcher.stop(), 5)
    assert writer.writing == [[0], [1, 2, 3], [4]]
