"""The logsink's own consumer of `logsink.events`: lean, batched, acknowledged after the write.

FastStream's per-message work (middlewares, dependency injection, a parsed message object, one awaited
ack per message) cost more CPU than the database's own insert work, so the ingest is consumed with
aiormq directly: each delivery is decoded straight from its JSON bytes with pydantic and joins the
ingest batch, from the channel's reader (no task per message, see `deliver_inline`); nothing is awaited
per message. A message is acknowledged only after the batch that holds
it is durably written: the batch's messages are marked settled, and the longest settled run of the
channel's deliveries (in delivery order) is acknowledged with one `multiple` ack on its highest tag.

- A message that can never be recorded (not JSON, malformed, or an event type the logsink does not
  record) is published to the dead-letter exchange with the reason and its original message id at its
  first delivery, then acknowledged (as the rest of Connect does).
- A batch that cannot be written after its retries is nacked with requeue; the quorum queue's delivery
  limit bounds the redeliveries: a message at its last delivery is dead-lettered here instead, with the
  reason (`delivery_limit`).
- A lost connection is reopened; what the old channel held unacknowledged is redelivered by the broker
  (a batch written meanwhile is written again: each record refuses a change it holds already, and a log line is
  read back once however its redelivery was grouped).

The broker's FastStream subscriber of `logsink.events` exists for the AsyncAPI document only and never
consumes (see `subscribers.py`), so nothing consumes the queue twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pydantic import ValidationError

from services.logsink import domain
from services.logsink.ports import DeliveryMetrics
from services.logsink.service import LogsinkService
from shared.errors import PermanentError, RetryableError
from shared.messaging import (
    DELIVERY_LIMIT,
    dead_letter_reason,
    delivery_count,
    delivery_properties,
    describe,
    limit_reason,
)
from shared.topology import DELIVERY_LIMIT as QUEUE_DELIVERY_LIMIT

logger = logging.getLogger(__name__)

# body, reason, metric label (`dead_letter_reason`), the delivery's properties (`delivery_properties`)
DeadLetter = Callable[[bytes, str, str, dict[str, Any]], Awaitable[None]]
# A message's receipt: the channel window it came on, its delivery tag, its metric label, and the
# message itself at its last delivery before the queue's limit (dead-lettered here if its batch fails).
Receipt = tuple["AckWindow", int, str, DeliveredMessage | None]

DEAD_LETTER_TIMEOUT = 30.0
CLOSE_TIMEOUT = 10.0
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
FRAMES_PER_DELIVERY = 3  # method, header, body (a body under the frame size)


def deliver_inline(channel: AbstractChannel, receive: Callable[[DeliveredMessage], None]) -> None:
    """Hand each delivery to `receive` from the channel's reader, without aiormq's task per message.

    aiormq runs every consumer callback in a task of its own: its creation, scheduling and bookkeeping
    cost more than the logsink's whole per-message work, which awaits nothing. Where this aiormq does
    not read deliveries the way this expects, its own path (the consumer callback) stays.
    """
    read_header = getattr(channel, "_Channel__get_content_header", None)
    read_content = getattr(channel, "_read_content", None)
    consumers = getattr(channel, "consumers", None)
    if read_header is None or read_content is None or consumers is None:
        return  # pragma: no cover - another aiormq: its task-per-message path

    async def on_deliver_frame(frame: Any) -> None:
        header = await read_header()
        message = await read_content(frame, header)
        if frame.consumer_tag not in consumers:  # cancelled: the broker redelivers what it sent
            return
        try:
            receive(message)
        except Exception:  # never stop the channel's reader (aiormq logs a failed callback too)
            logger.exception("could not receive a delivery")

    setattr(channel, "_on_deliver_frame", on_deliver_frame)  # noqa: B010


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


class EventConsumer:
    def __init__(
        self,
        amqp_url: str,
        queue: str,
        service: LogsinkService,
        *,
        prefetch: int,
        dead_letter: DeadLetter,
        metrics: DeliveryMetrics,
        delivery_limit: int = QUEUE_DELIVERY_LIMIT,
    ) -> None:
        self.amqp_url = amqp_url
        self.delivery_limit = delivery_limit
        self.queue = queue
        self.service = service
        self.prefetch = prefetch
        self.dead_letter = dead_letter
        self.metrics = metrics
        self.window: AckWindow | None = None
        self._connection: AbstractConnection | None = None
        self._consumer_tag: str | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        service.settle = self._settle

    async def start(self) -> None:
        """Start consuming; the first connection must succeed (like the broker's), later ones are retried."""
        self._stopping = False
        await self._open()
        self._supervisor = asyncio.create_task(self._supervise(), name="logsink-consumer")

    async def stop_consuming(self) -> None:
        """No new deliveries; the ones received stay in their batches and are acknowledged when written."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        window, tag = self.window, self._consumer_tag
        self._consumer_tag = None
        if window is not None and window.is_open and tag is not None:
            with contextlib.suppress(aiormq.exceptions.AMQPError, TimeoutError):
                await window.channel.basic_cancel(tag, timeout=CLOSE_TIMEOUT)
        await asyncio.sleep(0)  # deliveries read before the cancel join their batch (or are nacked)

    async def close(self) -> None:
        """After the last batch is written: finish dead-lettering, then close (the rest is redelivered)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=DEAD_LETTER_TIMEOUT)
        await self._close_connection()

    # --- per message: nothing awaited -------------------------------------------------------------

    async def _on_message(self, window: AckWindow, message: DeliveredMessage) -> None:
        self._receive(window, message)

    def _receive(self, window: AckWindow, message: DeliveredMessage) -> None:
        tag = message.delivery_tag
        if tag is None:  # pragma: no cover - deliveries always carry a tag
            return
        window.received(tag)
        handler = f"{message.exchange or 'default'}.{message.routing_key}"
        last = message if delivery_count(message.header.properties) >= self.delivery_limit else None
        try:
            planned = domain.plan_json(message.body)
            self.service.accept(planned, (window, tag, handler, last))
        except (ValidationError, PermanentError) as exc:
            self._spawn(self._dead_letter(window, tag, handler, message, exc))
        except RetryableError:  # shutting down: the batcher is closed
            self._spawn(self._requeue(window, tag, handler))
        except Exception as exc:  # a bug: requeue, and dead-letter a message that keeps failing
            logger.exception("could not plan an event", extra={"queue": self.queue})
            self._spawn(self._retry_or_give_up(window, tag, handler, last, exc))

    # --- after each batch ---------------------------------------------------------------------------

    async def _settle(self, receipts: list[Receipt], error: Exception | None) -> None:
        windows: set[AckWindow] = set()
        handlers: Counter[str] = Counter()
        for window, tag, handler, last in receipts:
            windows.add(window)
            if error is None:
                window.written(tag)
            elif last is not None:  # its last delivery: dead-letter it with the reason (counted there)
                self._spawn(self._dead_letter(window, tag, handler, last, error, DELIVERY_LIMIT))
                continue
            else:
                await window.requeue(tag)
            handlers[handler] += 1
        for window in windows:
            await window.acknowledge()
        status = "acked" if error is None else "nacked"
        for handler, count in handlers.items():
            self.metrics.consumed(handler, count, status)

    async def _retry_or_give_up(
        self, window: AckWindow, tag: int, handler: str, last: DeliveredMessage | None, exc: Exception
    ) -> None:
        if last is None:
            await self._requeue(window, tag, handler)
        else:
            await self._dead_letter(window, tag, handler, last, exc, DELIVERY_LIMIT)

    async def _dead_letter(
        self,
        window: AckWindow,
        tag: int,
        handler: str,
        message: DeliveredMessage,
        exc: Exception,
        kind: str | None = None,
    ) -> None:
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
            await self._requeue(window, tag, handler)
            return
        window.written(tag)
        await window.acknowledge()
        self.metrics.consumed(handler, 1, "rejected")

    async def _requeue(self, window: AckWindow, tag: int, handler: str) -> None:
        await window.requeue(tag)
        await window.acknowledge()  # later deliveries may be waiting on this one
        self.metrics.consumed(handler, 1, "nacked")

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- connection ---------------------------------------------------------------------------------

    async def _open(self) -> None:
        connection = await aiormq.connect(
            self.amqp_url, client_properties={"connection_name": "connect-logsink-ingest"}
        )
        try:
            # The prefetch bounds the frames in flight; aiormq's default buffer of 10 switches tasks
            # every three deliveries.
            channel = await connection.channel(
                publisher_confirms=False, frame_buffer_size=FRAMES_PER_DELIVERY * self.prefetch + 16
            )
            await channel.basic_qos(prefetch_count=self.prefetch)
            window = AckWindow(channel)
            deliver_inline(channel, partial(self._receive, window))
            ok = await channel.basic_consume(self.queue, partial(self._on_message, window), no_ack=False)
        except BaseException:
            await connection.close()
            raise
        self._connection, self.window, self._consumer_tag = connection, window, ok.consumer_tag
        logger.info("consuming", extra={"queue": self.queue, "prefetch": self.prefetch})

    async def _supervise(self) -> None:
        while not self._stopping:
            connection, window = self._connection, self.window
            if connection is not None and window is not None:
                await asyncio.wait(
                    [connection.closing, window.channel.closing], return_when=asyncio.FIRST_COMPLETED
                )
            logger.warning("the ingest channel closed; reconnecting", extra={"queue": self.queue})
            await self._close_connection()
            for attempt in itertools.count():
                try:
                    await self._open()
                    break
                except Exception as exc:
                    delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                    logger.warning(
                        "could not reopen the ingest channel", extra={"reason": str(exc), "retry_in": delay}
                    )
                    await asyncio.sleep(delay)

    async def _close_connection(self) -> None:
        connection, self._connection, self._consumer_tag = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)
