"""The executor's run events on their way to the broker: in order, held while the broker is away.

Losing the broker is not a run's failure. Every event a run emits (`RunStarted`, numbered `RunLog`,
`RunProgress`, the one `RunFinished`) goes into this buffer and returns at once; one task publishes
them in order, and while publishing fails (connection lost, broker restarting) it keeps them and tries
again with a capped backoff, so when the broker is back everything arrives in the order it was emitted.

Up to `window` events are out at once, in order on one channel, their confirms awaited together: one at a
time, every event waited for the broker's confirm of the one before (a persistent message's confirm waits
for the broker's disk), and with many runs at once a run's `RunFinished` queued behind the others' events for
about a second. Should some events of a window fail and later ones not (one publish timing out, say), the
failed ones go again first and so arrive after the later ones: the logsink applies a run's events in any
order (`services/logsink/domain.py`). After a failure the buffer sends one event at a time until one is
confirmed, so what an outage held leaves in the order it was emitted.

Bounded: at `capacity` held events an emitting run waits for room (its work pauses; nothing is dropped).
Progress is coalesced: a newer `RunProgress` of a run replaces the one still waiting, so an outage fills
the buffer only with log lines and final events. A `RunFinished` carries a callback (mark the lease
reported) that runs once it is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.executor.ports import EventPublisher
from shared import tracing
from shared.contracts import Envelope, RunProgress

logger = logging.getLogger(__name__)
OnPublished = Callable[[], Awaitable[None]]


@dataclass
class _Held:
    message: Envelope
    on_published: OnPublished | None = None
    traceparent: str | None = None  # the emitting run's trace: the flusher task publishes in it


class EventBuffer:
    def __init__(
        self,
        publisher: EventPublisher,
        *,
        capacity: int = 5000,
        window: int = 64,
        attempt_timeout: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.publisher = publisher
        self.capacity = capacity
        self.window = window
        self.attempt_timeout = attempt_timeout  # a publish that neither confirms nor fails is retried
        self.max_backoff = max_backoff
        self._held: deque[_Held] = deque()  # waiting to go out
        self._out = 0  # out now, awaiting their confirms
        self._progress: dict[str, _Held] = {}  # run id → its progress event still waiting
        self._ids: set[str] = set()  # message ids held
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._held) + self._out

    def holds(self, message_id: str) -> bool:
        return message_id in self._ids

    async def publish(self, message: Envelope, on_published: OnPublished | None = None) -> None:
        """Hand the event over for publishing; waits only while the buffer is full."""
        run_id = message.subject or ""
        if isinstance(message, RunProgress) and (waiting := self._progress.get(run_id)) is not None:
            self._ids.discard(waiting.message.id)
            self._ids.add(message.id)
            waiting.message = message  # coalesced: only the latest progress matters
            return
        while len(self) >= self.capacity:
            self._room.clear()
            await self._room.wait()
        held = _Held(message, on_published, tracing.current_traceparent())
        self._held.append(held)
        self._ids.add(message.id)
        if isinstance(message, RunProgress):
            self._progress[run_id] = held
        self._start()
        self._wake.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until everything held is published (shutdown); False when `timeout` passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self) and loop.time() < deadline:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), timeout=max(deadline - loop.time(), 0.01))
        if len(self):
            logger.error("broker unavailable at shutdown: %d run events not published", len(self))
        return not len(self)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="run-events")

    async def _flush(self) -> None:
        delay, failures = 0.2, 0
        while True:
            if not self._held:
                self._wake.clear()
                await self._wake.wait()
                continue
            error = await self._send(self._take(1 if failures else self.window))
            if error is None:
                if failures:
                    logger.info(
                        "broker is back after %d failed tries; publishing the held run events", failures
                    )
                delay, failures = 0.2, 0
                continue
            failures += 1
            if failures == 1:
                logger.warning(
                    "broker unavailable; holding %d run event(s) until it is back: %r", len(self), error
                )
            await asyncio.sleep(delay)  # the broker is away: nothing to wait on but time
            delay = min(delay * 2, self.max_backoff)

    async def _send(self, out: list[_Held]) -> Exception | None:
        """Publish `out` at once; the failed ones are held again, first. Returns a failure, if any."""
        self._out, errors = len(out), None
        try:
            errors = await asyncio.gather(
                *(self._publish_once(held.message, held.traceparent) for held in out)
            )
        finally:
            for n in reversed(range(len(out))):  # cancelled (closing): everything out stays held
                if errors is None or errors[n] is not None:
                    self._held.appendleft(out[n])  # again first, in the order they were emitted
            self._out = 0
        self._room.set()
        for held, error in zip(out, errors, strict=True):
            if error is None:
                await self._published(held)
        return next((error for error in errors if error is not None), None)

    def _take(self, count: int) -> list[_Held]:
        out: list[_Held] = []
        while self._held and len(out) < count:
            held = self._held.popleft()
            if self._progress.get(held.message.subject or "") is held:
                del self._progress[held.message.subject or ""]  # a newer one queues behind this
            out.append(held)
        return out

    async def _publish_once(self, message: Envelope, traceparent: str | None = None) -> Exception | None:
        try:
            with tracing.restored(traceparent):  # wait_for's task copies the context
                await asyncio.wait_for(self.publisher.publish(message), timeout=self.attempt_timeout)
        except Exception as exc:
            return exc
        return None

    async def _published(self, held: _Held) -> None:
        if held.on_published is not None:
            try:
                await held.on_published()
            except Exception:
                logger.warning("after publishing %s", held.message.type, exc_info=True)
        # Held until marked reported: the reaper must not republish a result still in flight here.
        self._ids.discard(held.message.id)
