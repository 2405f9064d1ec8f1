"""The executor's event buffer: events leave in order, are held while publishing fails, progress coalesces,
a full buffer makes the emitter wait (nothing dropped)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.executor.event_buffer import EventBuffer
from shared.contracts import Envelope, RunLog, RunProgress
from shared.contracts.runs import LogLevel, RunLogData, RunProgressData
from tests.support.waiting import eventually

RUN = "7.1"


def log(seq: int) -> RunLog:
    data = RunLogData(run_id=RUN, seq=seq, level=LogLevel.INFO, message=f"line {seq}", at=datetime.now(UTC))
    return RunLog(source="test", subject=RUN, data=data)


def progress(read: int) -> RunProgress:
    data = RunProgressData(
        run_id=RUN, records_read=read, records_written=read, records_rejected=0, bytes_read=read,
        bytes_total=None, records_per_second=1.0, at=datetime.now(UTC),
    )  # fmt: skip
    return RunProgress(source="test", subject=RUN, data=data)


class FlakyBroker:
    """Fails every publish while `down` is set; records what it accepted."""

    def __init__(self) -> None:
        self.down = False
        self.failures = 0
        self.sent: list[Envelope] = []
        self.got = asyncio.Event()

    async def publish(self, message: Envelope) -> None:
        if self.down:
            self.failures += 1
            raise ConnectionError("broker gone")
        self.sent.append(message)
        self.got.set()


def described(messages: list[Envelope]) -> list[str]:
    return [
        f"log {m.data.seq}" if isinstance(m, RunLog) else f"progress {m.data.records_read}"  # type: ignore[attr-defined]
        for m in messages
    ]


async def test_events_held_during_an_outage_leave_in_order_with_progress_coalesced() -> None:
    broker = FlakyBroker()
    buffer = EventBuffer(broker, max_backoff=0.05)
    broker.down = True
    await buffer.publish(log(1))
    await buffer.publish(progress(10))
    await buffer.publish(log(2))
    for read in (20, 30, 40):
        await buffer.publish(progress(read))
    await buffer.publish(log(3))
    assert len(buffer) == 4  # three log lines and one (the latest) progress
    await eventually(lambda: broker.failures >= 3, what="three failed sends")
    assert broker.sent == []
    broker.down = False
    assert await buffer.drain(timeout=10)
    assert described(broker.sent) == ["log 1", "progress 40", "log 2", "log 3"]
    await buffer.close()


async def test_a_full_buffer_makes_the_emitter_wait_and_drops_nothing() -> None:
    broker = FlakyBroker()
    buffer = EventBuffer(broker, capacity=3, max_backoff=0.05)
    broker.down = True
    for seq in (1, 2, 3):
        await buffer.publish(log(seq))
    fourth = asyncio.create_task(buffer.publish(log(4)))
    await asyncio.sleep(0.2)  # the emitter is held back while the broker is away
    assert not fourth.done()
    broker.down = False
    await asyncio.wait_for(fourth, timeout=10)
    assert await buffer.drain(timeout=10)
    assert described(broker.sent) == ["log 1", "log 2", "log 3", "log 4"]
    await buffer.close()


async def test_the_callback_runs_once_the_event_is_out() -> None:
    broker = FlakyBroker()
    buffer = EventBuffer(broker, max_backoff=0.05)
    reported = asyncio.Event()

    async def mark() -> None:
        assert broker.sent, "called before the event was published"
        reported.set()

    broker.down = True
    first = log(1)
    await buffer.publish(first, on_published=mark)
    assert buffer.holds(first.id)
    broker.down = False
    await asyncio.wait_for(reported.wait(), timeout=10)
    assert not buffer.holds(first.id)
    await buffer.close()


class SlowBroker:
    """Confirms nothing until `release` is set; records how many publishes were out at once."""

    def __init__(self, fail_once: set[int] | None = None) -> None:
        self.release = asyncio.Event()
        self.out = self.most_out = 0
        self.sent: list[Envelope] = []
        self.fail_once = fail_once or set()  # seq numbers whose first publish fails

    async def publish(self, message: Envelope) -> None:
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            await self.release.wait()
            seq = message.data.seq  # type: ignore[attr-defined]
            if seq in self.fail_once:
                self.fail_once.discard(seq)
                raise ConnectionError("confirm timed out")
            self.sent.append(message)
        finally:
            self.out -= 1


async def test_many_events_are_out_at_once_and_leave_in_order() -> None:
    broker = SlowBroker()
    buffer = EventBuffer(broker, window=8, max_backoff=0.05)
    for seq in range(1, 21):
        await buffer.publish(log(seq))
    await asyncio.sleep(0.05)
    assert broker.most_out == 8 and len(buffer) == 20  # out, not yet confirmed: still held
    assert not await buffer.drain(timeout=0.1)  # drain waits for what is out
    broker.release.set()
    assert await buffer.drain(timeout=10)
    assert described(broker.sent) == [f"log {seq}" for seq in range(1, 21)]
    await buffer.close()


async def test_an_event_that_fails_in_a_window_goes_again_and_nothing_is_lost() -> None:
    broker = SlowBroker(fail_once={3})
    broker.release.set()
    buffer = EventBuffer(broker, window=8, max_backoff=0.05)
    called: list[int] = []
    for seq in range(1, 7):

        async def mark(seq: int = seq) -> None:
            called.append(seq)

        await buffer.publish(log(seq), on_published=mark)
    assert await buffer.drain(timeout=10)
    assert sorted(described(broker.sent)) == sorted(f"log {seq}" for seq in range(1, 7))
    assert described(broker.sent)[-1] == "log 3"  # the one that failed went again, after the others
    assert sorted(called) == [1, 2, 3, 4, 5, 6]  # each callback once, after its own confirm
    await buffer.close()


async def test_closing_while_events_are_out_keeps_them_held() -> None:
    broker = SlowBroker()
    buffer = EventBuffer(broker, window=8, max_backoff=0.05)
    first = log(1)
    await buffer.publish(first)
    await asyncio.sleep(0.05)
    assert broker.out == 1
    await buffer.close()
    assert len(buffer) == 1 and buffer.holds(first.id)
