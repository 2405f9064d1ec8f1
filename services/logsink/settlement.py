"""What becomes of a delivery after it was received: acknowledged once its batch is written, requeued, or
dead-lettered with its reason.

`Settlement` exists before both the service and the consumer: the service is built with its `settle`
(told after every batch), the consumer with the settlement too (for what never joins a batch), so
neither is wired into the other after construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, DeliveredMessage

from services.logsink.ports import DeliveryMetrics
from shared.messaging import DELIVERY_LIMIT, dead_letter_reason, delivery_properties, describe, limit_reason

logger = logging.getLogger(__name__)

# body, reason, metric label (`dead_letter_reason`), the delivery's properties (`delivery_properties`)
DeadLetter = Callable[[bytes, str, str, dict[str, Any]], Awaitable[None]]
# A message's receipt: the channel window it came on, its delivery tag, its metric label, and the
# message itself at its last delivery before the queue's limit (dead-lettered here if its batch fails).
Receipt = tuple["AckWindow", int, str, DeliveredMessage | None]

DEAD_LETTER_TIMEOUT = 30.0


class AckWindow:
    """The unsettled deliveries of one channel, in delivery order, and their acknowledgement.

    A delivery is settled when its batch is written or it was dead-lettered (to acknowledge), or when
    it was nacked (already sent). The longest settled prefix is acknowledged with one `multiple` ack on
    its highest tag to acknowledge, so a message is never acknowledged before its own batch is written,
    whatever order batches and dead-letters finish in.
    """

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self._unsettled: deque[int] = deque()
        self._outcomes: dict[int, bool] = {}
        self._lock = asyncio.Lock()  # keeps acks and nacks in the order they were decided

    @property
    def is_open(self) -> bool:
        return not self.channel.is_closed

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    def received(self, tag: int) -> None:
        self._unsettled.append(tag)

    def written(self, tag: int) -> None:
        self._outcomes[tag] = True

    async def acknowledge(self) -> None:
        """Acknowledge every delivery of the settled prefix in one frame."""
        async with self._lock:
            highest = None
            while self._unsettled:
                outcome = self._outcomes.pop(self._unsettled[0], None)
                if outcome is None:
                    break
                tag = self._unsettled.popleft()
                if outcome:
                    highest = tag
            if highest is None or not self.is_open:
                return  # a closed channel's deliveries are redelivered by the broker
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await self.channel.basic_ack(highest, multiple=True, wait=False)

    async def requeue(self, tag: int) -> None:
        """Nack with requeue at once; the delivery only counts as settled once the nack is sent."""
        async with self._lock:
            if self.is_open:
                with contextlib.suppress(aiormq.exceptions.AMQPError):
                    await self.channel.basic_nack(tag, requeue=True, wait=False)
            self._outcomes[tag] = False


class Settlement:
    """Acknowledges, requeues and dead-letters deliveries of `queue` (the logs name it)."""

    def __init__(self, queue: str, dead_letter: DeadLetter, metrics: DeliveryMetrics) -> None:
        self.queue = queue
        self.dead_letter = dead_letter
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    async def settle(self, receipts: list[Receipt], error: Exception | None) -> None:
        """After a batch: its deliveries acknowledged when it was written, else requeued or dead-lettered."""
        windows: set[AckWindow] = set()
        handlers: Counter[str] = Counter()
        for window, tag, handler, last in receipts:
            windows.add(window)
            if error is None:
                window.written(tag)
            elif last is not None:  # its last delivery: dead-letter it with the reason (counted there)
                self.spawn(self.reject(window, tag, handler, last, error, DELIVERY_LIMIT))
                continue
            else:
                await window.requeue(tag)
            handlers[handler] += 1
        for window in windows:
            await window.acknowledge()
        status = "acked" if error is None else "nacked"
        for handler, count in handlers.items():
            self.metrics.consumed(handler, count, status)

    async def retry_or_give_up(
        self, window: AckWindow, tag: int, handler: str, last: DeliveredMessage | None, exc: Exception
    ) -> None:
        if last is None:
            await self.requeue(window, tag, handler)
        else:
            await self.reject(window, tag, handler, last, exc, DELIVERY_LIMIT)

    async def reject(
        self,
        window: AckWindow,
        tag: int,
        handler: str,
        message: DeliveredMessage,
        exc: Exception,
        kind: str | None = None,
    ) -> None:
        """Dead-letter the message with its reason, then acknowledge it (requeued if that is not confirmed)."""
        properties = delivery_properties(message.header.properties)
        if kind == DELIVERY_LIMIT:
            reason = limit_reason(exc, properties["delivery_count"])
        else:
            reason, kind = describe(exc), dead_letter_reason(exc)
        logger.error(
            "dead-lettering a message",
            extra={"reason": reason[:500], "queue": self.queue, "kind": kind,
                   "message_id": properties["message_id"]},
        )  # fmt: skip
        try:
            await asyncio.wait_for(
                self.dead_letter(message.body, reason, kind, properties), DEAD_LETTER_TIMEOUT
            )
        except Exception as publish_error:  # not confirmed: keep the message, try again later
            logger.warning(
                "dead-lettering failed; requeued", extra={"queue": self.queue, "reason": str(publish_error)}
            )
            await self.requeue(window, tag, handler)
            return
        window.written(tag)
        await window.acknowledge()
        self.metrics.consumed(handler, 1, "rejected")

    async def requeue(self, window: AckWindow, tag: int, handler: str) -> None:
        await window.requeue(tag)
        await window.acknowledge()  # later deliveries may be waiting on this one
        self.metrics.consumed(handler, 1, "nacked")

    def spawn(self, coro: Any) -> None:
        """Run a requeue or dead-letter beside the channel's reader (which awaits nothing per message)."""
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def finish(self) -> None:
        """Let the dead-letters under way end (bounded): before the connection closes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=DEAD_LETTER_TIMEOUT)
