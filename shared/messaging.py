"""Broker factory and the one way Connect publishes.

Publishing: publisher confirms on, `mandatory` with unroutable messages raising, persistent delivery,
the envelope id as AMQP message id, the envelope as a structured-mode CloudEvent (content type
`application/cloudevents+json`, see `shared/contracts/cloudevents.py`). Consumers read that, the binary
mode and plain `application/json` envelopes alike (`decode_cloudevent`). Consuming: explicit prefetch; a message that can never succeed (a
body that is not JSON, JSON that does not fit its model, a permanent error) is dead-lettered at once with
`x-connect-reason`; on an unexpected error the message is nacked and requeued, and at its last delivery
before the quorum queue's limit it is dead-lettered with the reason too, so work is never silently
dropped and a poison message never loops. Every dead letter keeps the original message id and is
counted (`connect_dead_letters_total{service,reason}`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, DeliveryError
from faststream import AckPolicy, BaseMiddleware, StreamMessage
from faststream.exceptions import IgnoredException
from faststream.message import decode_message
from faststream.rabbit import Channel, RabbitBroker, RabbitExchange
from faststream.rabbit.parser import AioPikaParser
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.rabbit.schemas import RABBIT_REPLY
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared.contracts import Envelope
from shared.contracts.cloudevents import (
    STRUCTURED_CONTENT_TYPE,
    is_binary,
    is_structured,
    structured_from_binary,
)
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
        decoder=decode_cloudevent,
        graceful_timeout=graceful_timeout,
        middlewares=[RabbitPrometheusMiddleware(registry=registry, app_name=f"connect-{service}")],
        app_id=f"connect-{service}",
        logger=logging.getLogger(f"connect.{service}.broker"),
        log_level=logging.DEBUG,
    )


async def decode_cloudevent(
    msg: StreamMessage[Any], default: Callable[[StreamMessage[Any]], Awaitable[Any]]
) -> Any:
    """The envelope of a message in either CloudEvents mode; anything else as FastStream decodes it.

    A body that is not JSON raises ValueError, which the consumers dead-letter (`undecodable`).
    """
    if is_structured(msg.content_type):
        return json.loads(msg.body)
    if is_binary(msg.headers):
        return structured_from_binary(msg.body, msg.content_type, msg.headers)
    return await default(msg)


_REPLY_PARSER = AioPikaParser()
UNDECODABLE, INVALID, PERMANENT, DELIVERY_LIMIT = "undecodable", "invalid", "permanent", "delivery_limit"
REASON_LIMIT = 1000  # characters of `x-connect-reason` (a decode error may quote a whole body)
# Errors that mean a body is not JSON at all, as pydantic reports them.
_NOT_JSON = frozenset({"json_invalid", "json_type"})


def dead_letter_reason(exc: BaseException) -> str:
    """The bounded metric label of a message that can never succeed."""
    if isinstance(exc, PermanentError):
        return PERMANENT
    if isinstance(exc, ValidationError):
        return UNDECODABLE if any(e["type"] in _NOT_JSON for e in exc.errors()) else INVALID
    return UNDECODABLE  # JSONDecodeError, UnicodeDecodeError: not JSON, or binary


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:REASON_LIMIT]


def limit_reason(exc: BaseException, previous_deliveries: int) -> str:
    """The reason of a message that failed at its last delivery before the queue's limit."""
    return f"delivery limit reached after {previous_deliveries + 1} deliveries: {describe(exc)}"[
        :REASON_LIMIT
    ]


class Requester:
    """Request/reply with many calls in flight over one direct reply-to consumer.

    FastStream's `broker.request` holds a lock for each whole round trip, so concurrent requests are
    answered one after another. Here the process consumes RabbitMQ's direct reply-to pseudo-queue once
    (no-ack) on the broker's default channel, the one `broker.publish` uses, as direct reply-to
    requires; each request carries a fresh correlation id and waits on its own future. A reply nobody
    waits for (its caller timed out) is dropped. After a reconnect the broker's robust channel
    re-consumes; a request whose reply was lost with the old channel times out (RetryableError).
    """

    def __init__(
        self, broker: RabbitBroker, topology: Topology, content_type: str = STRUCTURED_CONTENT_TYPE
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.content_type = content_type
        self.waiting: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}
        self._consumed: AbstractQueue | None = None
        self._consuming = asyncio.Lock()

    async def request(self, message: Envelope, *, timeout: float) -> Any:
        await self._consume_replies()
        correlation_id = uuid.uuid4().hex
        answer = asyncio.get_running_loop().create_future()
        self.waiting[correlation_id] = answer
        try:
            async with asyncio.timeout(timeout):
                await self._publish(message, correlation_id, timeout)
                reply = await answer
        except TimeoutError as exc:
            raise RetryableError(f"no answer to {message.type} within {timeout:.0f}s") from exc
        except DeliveryError as exc:
            raise RetryableError(f"{message.type} could not be routed") from exc
        finally:
            self.waiting.pop(correlation_id, None)
        return decode_message(await _REPLY_PARSER.parse_message(reply))  # type: ignore[arg-type]

    async def _publish(self, message: Envelope, correlation_id: str, timeout: float) -> None:
        await self.broker.publish(
            message.model_dump_json(),
            exchange=self.topology.commands,
            routing_key=message.routing_key,
            reply_to=RABBIT_REPLY.name,
            correlation_id=correlation_id,
            expiration=timeout,
            persist=True,  # as every message (quorum queues keep each on disk whatever it says)
            message_id=message.id,
            message_type=message.type,
            content_type=self.content_type,
        )

    async def _consume_replies(self) -> None:
        """Consume the reply pseudo-queue once per broker connection (the declarer caches the queue)."""
        async with self._consuming:
            queue = await self.broker.declare_queue(RABBIT_REPLY)
            if queue is not self._consumed:  # first request, or the broker connected anew
                await queue.consume(self._deliver, no_ack=True)
                self._consumed = queue

    async def close(self) -> None:
        """Fail the requests still waiting: the broker closes, their answers can no longer arrive."""
        for answer in self.waiting.values():
            if not answer.done():
                answer.set_exception(RetryableError("the service is stopping"))
        self._consumed = None

    async def _deliver(self, reply: AbstractIncomingMessage) -> None:
        answer = self.waiting.get(reply.correlation_id or "")
        if answer is None or answer.done():
            logger.debug("dropping a reply nobody waits for", extra={"correlation_id": reply.correlation_id})
            return
        answer.set_result(reply)


class Publisher:
    """Publishes envelopes to the right exchange with Connect's delivery guarantees."""

    def __init__(
        self,
        broker: RabbitBroker,
        topology: Topology,
        *,
        count_dead_letter: Callable[[str], None] = lambda reason: None,
        content_type: str = STRUCTURED_CONTENT_TYPE,
    ) -> None:
        self.broker = broker
        self.topology = topology
        self.count_dead_letter = count_dead_letter
        self.content_type = content_type  # CONNECT_MESSAGE_CONTENT_TYPE; the body is the same either way
        self.requester = Requester(broker, topology, content_type)

    async def publish(self, message: Envelope) -> None:
        """Publish on the exchange of the message's kind (events, commands or control)."""
        await self._publish(message, self.topology.exchange_for(message.exchange_kind), message.routing_key)

    async def request(self, message: Envelope, *, timeout: float) -> Any:
        """Request/reply over the commands exchange; returns the decoded reply body.

        The command expires unconsumed when the caller stops waiting: nobody is left to hear its answer.
        Many requests are in flight at once (see `Requester`).
        """
        return await self.requester.request(message, timeout=timeout)

    async def close(self) -> None:
        await self.requester.close()

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
                content_type=self.content_type,
            )
        except DeliveryError as exc:
            raise RetryableError(f"{message.type} was not routed to any queue ({routing_key})") from exc
        except AMQPError as exc:
            raise RetryableError(f"broker refused {message.type}: {exc}") from exc

    async def dead_letter(
        self,
        body: bytes,
        *,
        reason: str,
        source_queue: str,
        kind: str = PERMANENT,
        original: Mapping[str, Any] | None = None,
    ) -> None:
        """Send a message that can never succeed to the dead-letter queue, with the reason, and count it.

        `original` holds the delivery's properties (`message_id`, `type`, `content_type`,
        `correlation_id`, `headers`, `delivery_count`): the dead letter keeps them, so it is found by
        the id it was published with.
        """
        props = dict(original or {})
        headers = {
            **(props.get("headers") or {}),
            "x-connect-reason": reason[:REASON_LIMIT],
            "x-connect-queue": source_queue,
            "x-connect-dead-letter": kind,
            "x-connect-delivery-count": int(props.get("delivery_count") or 0),
        }
        await self.broker.publish(
            body,
            exchange=self.topology.dead_letters_exchange,
            persist=True,
            headers=headers,
            message_id=props.get("message_id"),
            message_type=props.get("type"),
            content_type=props.get("content_type"),
            correlation_id=props.get("correlation_id"),
        )
        self.count_dead_letter(kind)


def delivery_count(raw: Any) -> int:
    """How often the broker delivered this message before (quorum queues' `x-delivery-count`)."""
    headers = getattr(raw, "headers", None) or {}
    try:
        return int(headers.get("x-delivery-count") or 0)
    except (TypeError, ValueError):
        return 0


def delivery_properties(raw: Any) -> dict[str, Any]:
    """What a dead letter keeps of the delivery it replaces (see `Publisher.dead_letter`)."""
    headers = {k: v for k, v in (getattr(raw, "headers", None) or {}).items() if not k.startswith("x-")}
    return {
        "message_id": getattr(raw, "message_id", None),
        "type": getattr(raw, "type", None) or getattr(raw, "message_type", None),  # aio-pika, pamqp
        "content_type": getattr(raw, "content_type", None),
        "correlation_id": getattr(raw, "correlation_id", None),
        "headers": headers,
        "delivery_count": delivery_count(raw),
    }


def permanent_error_middleware(publisher: Publisher) -> type[BaseMiddleware[Any, Any]]:
    """Middleware class that dead-letters every message that can never succeed, with the reason.

    The body is decoded before the handler runs: a body that is not JSON (or binary) goes to the
    dead-letter queue at its first delivery, as does JSON that does not fit the handler's model and
    work that fails with a permanent error (acknowledged here), instead of being redelivered until the
    delivery limit. Any other error is raised (nack, requeue) until the delivery that the broker would
    dead-letter on failure: that one is dead-lettered here, with the reason.
    """
    last_delivery = publisher.topology.delivery_limit

    class PermanentErrorMiddleware(BaseMiddleware[Any, Any]):
        async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
            try:
                decoded = await msg.decode()
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                return await self._dead_letter(msg, exc, UNDECODABLE)
            if not isinstance(decoded, dict):  # every Connect message is a JSON object
                not_json = isinstance(decoded, bytes | str)
                error = PermanentError(
                    f"the body is not {'JSON' if not_json else 'a JSON object'} "
                    f"({len(msg.body)} bytes, content type {msg.content_type or 'unset'})"
                )
                return await self._dead_letter(msg, error, UNDECODABLE if not_json else INVALID)
            try:
                return await call_next(msg)
            except (PermanentError, ValidationError) as exc:
                return await self._dead_letter(msg, exc, dead_letter_reason(exc))
            except IgnoredException:
                raise  # a handler's own ack/nack/reject decision, or a stop: not a failure
            except Exception as exc:
                if delivery_count(msg.raw_message) < last_delivery:
                    raise  # nack and requeue: the next delivery may succeed
                return await self._dead_letter(msg, exc, DELIVERY_LIMIT)

        async def _dead_letter(self, msg: StreamMessage[Any], exc: Exception, kind: str) -> None:
            raw = msg.raw_message
            queue = self._queue_name() or getattr(raw, "routing_key", "") or ""
            reason = limit_reason(exc, delivery_count(raw)) if kind == DELIVERY_LIMIT else describe(exc)
            logger.error(
                "dead-lettering a message",
                extra={"reason": reason[:500], "queue": queue, "kind": kind, "message_id": msg.message_id},
            )
            await publisher.dead_letter(
                msg.body, reason=reason, source_queue=queue, kind=kind, original=delivery_properties(raw)
            )

        def _queue_name(self) -> str | None:
            subscriber = self.context.get_local("handler_")
            queue = getattr(subscriber, "queue", None)
            return getattr(queue, "name", None)

    return PermanentErrorMiddleware
