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
- Tracing on, each delivery records a consumer span in the trace its `traceparent` header names (by
  hand: FastStream's telemetry middleware does not see this consumer).
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
from collections.abc import Callable
from functools import partial
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pydantic import ValidationError

from services.logsink import domain
from services.logsink.domain import Planned
from services.logsink.settlement import AckWindow, Receipt, Settlement
from shared import tracing
from shared.errors import PermanentError, RetryableError
from shared.messaging import (
    delivery_count,
)
from shared.topology import DELIVERY_LIMIT as QUEUE_DELIVERY_LIMIT

logger = logging.getLogger(__name__)

# What the service does with a planned event and its receipt (`LogsinkService.accept`).
Accept = Callable[[Planned, Receipt], None]

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


class EventConsumer:
    def __init__(
        self,
        amqp_url: str,
        queue: str,
        accept: Accept,
        settlement: Settlement,
        *,
        prefetch: int,
        delivery_limit: int = QUEUE_DELIVERY_LIMIT,
    ) -> None:
        self.amqp_url = amqp_url
        self.delivery_limit = delivery_limit
        self.queue = queue
        self.accept = accept
        self.settlement = settlement
        self.prefetch = prefetch
        self.window: AckWindow | None = None
        self._connection: AbstractConnection | None = None
        self._consumer_tag: str | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

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
        await self.settlement.finish()
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
        settlement = self.settlement
        if tracing.enabled():  # FastStream's middleware does not see this consumer: the span by hand
            tracing.consumer_span(f"{self.queue} process", message.header.properties.headers,
                                  **{"messaging.system": "rabbitmq", "messaging.destination.name": self.queue})  # fmt: skip
        try:
            planned = domain.plan_json(message.body)
            self.accept(planned, (window, tag, handler, last))
        except (ValidationError, PermanentError) as exc:
            settlement.spawn(settlement.reject(window, tag, handler, message, exc))
        except RetryableError:  # shutting down: the batcher is closed
            settlement.spawn(settlement.requeue(window, tag, handler))
        except Exception as exc:  # a bug: requeue, and dead-letter a message that keeps failing
            logger.exception("could not plan an event", extra={"queue": self.queue})
            settlement.spawn(settlement.retry_or_give_up(window, tag, handler, last, exc))

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
