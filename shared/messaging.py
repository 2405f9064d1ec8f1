"""Broker factory and the one way Connect publishes.

Publishing: publisher confirms on, `mandatory` with unroutable messages raising, persistent delivery,
the envelope id as AMQP message id. Consuming: explicit prefetch; on an unexpected error the message is
nacked and requeued, and the quorum queue's delivery limit dead-letters it after a bounded number of
attempts, so work is never silently dropped and a poison message never loops.
"""

from __future__ import annotations

import logging
from typing import Any

from aio_pika.exceptions import AMQPError, DeliveryError
from faststream import AckPolicy, BaseMiddleware, StreamMessage
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared.contracts import Envelope
from shared.errors import PermanentError, RetryableError
from shared.topology import Topology

logger = logging.getLogger(__name__)


def create_broker(
    amqp_url: str, *, service: str, registry: CollectorRegistry, prefetch: int, graceful_timeout: float
) -> RabbitBroker:
    return RabbitBroker(
        amqp_url,
        default_channel=Channel(prefetch_count=prefetch, publisher_confirms=True, on_return_raises=True),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        graceful_timeout=graceful_timeout,
        middlewares=[RabbitPrometheusMiddleware(registry=registry, app_name=f"connect-{service}")],
        app_id=f"connect-{service}",
        logger=logging.getLogger(f"connect.{service}.broker"),
        log_level=logging.DEBUG,
    )


class Publisher:
    """Publishes envelopes to the right exchange with Connect's delivery guarantees."""

    def __init__(self, broker: RabbitBroker, topology: Topology) -> None:
        self.broker = broker
        self.topology = topology

    async def publish(self, message: Envelope) -> None:
        """Publish on the exchange of the message's kind (events, commands or control)."""
        await self._publish(message, self.topology.exchange_for(message.exchange_kind), message.routing_key)

    async def request(self, message: Envelope, *, timeout: float) -> Any:
        """Request/reply over the commands exchange; returns the decoded reply body."""
        try:
            reply = await self.broker.request(
                message.model_dump_json(),
                exchange=self.topology.commands,
                routing_key=message.routing_key,
                timeout=timeout,
                message_id=message.id,
                message_type=message.type,
                content_type="application/json",
            )
        except TimeoutError as exc:
            raise RetryableError(f"no answer to {message.type} within {timeout:.0f}s") from exc
        except DeliveryError as exc:
            raise RetryableError(f"{message.type} could not be routed") from exc
        return await reply.decode()

    async def _publish(self, message: Envelope, exchange: RabbitExchange, routing_key: str) -> None:
        try:
            await self.broker.publish(
                message.model_dump_json(),
                exchange=exchange,
                routing_key=routing_key,
                mandatory=True,
                persist=True,
                message_id=message.id,
                message_type=message.type,
                content_type="application/json",
            )
        except DeliveryError as exc:
            raise RetryableError(f"{message.type} was not routed to any queue ({routing_key})") from exc
        except AMQPError as exc:
            raise RetryableError(f"broker refused {message.type}: {exc}") from exc

    async def dead_letter(self, body: bytes, *, reason: str, source_queue: str) -> None:
        """Send a message that can never succeed to the dead-letter queue, with the reason."""
        await self.broker.publish(
            body,
            exchange=self.topology.dead_letters_exchange,
            persist=True,
            headers={"x-connect-reason": reason[:1000], "x-connect-queue": source_queue},
        )


def permanent_error_middleware(publisher: Publisher) -> type[BaseMiddleware[Any, Any]]:
    """Middleware class that dead-letters messages failing with a permanent error, with the reason.

    A message that cannot be decoded or whose work can never succeed goes to the dead-letter queue at
    once (acknowledged here), instead of being redelivered until the delivery limit.
    """

    class PermanentErrorMiddleware(BaseMiddleware[Any, Any]):
        async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
            try:
                return await call_next(msg)
            except (PermanentError, ValidationError) as exc:
                raw = msg.raw_message
                queue = getattr(raw, "routing_key", "") or ""
                reason = f"{type(exc).__name__}: {exc}"
                logger.error("dead-lettering a message", extra={"reason": reason[:500], "queue": queue})
                await publisher.dead_letter(msg.body, reason=reason, source_queue=queue)
                return None

    return PermanentErrorMiddleware
