"""The bytes on the wire match docs/events.md: every message Connect publishes is a structured-mode
CloudEvent (AMQP binding), read back raw with aio-pika from a queue the test binds itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from services.cli.trigger import publish as cli_publish
from shared.contracts import ALL_MESSAGES, Envelope, RunFinished, TriggerFired
from shared.contracts.runs import RequestCommand
from shared.messaging import Publisher, create_broker
from shared.metrics import create_metrics
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topology import Topology, declare_topology
from tests.support.waiting import eventually
from tests.unit.factories import sample_message

CONNECT_PUBLISHES = [cls for cls in ALL_MESSAGES if cls is not TriggerFired]  # other systems publish it


@dataclass
class Wire:
    channel: AbstractChannel
    topology: Topology
    publisher: Publisher

    async def tap(self, message: Envelope) -> aio_pika.abc.AbstractQueue:
        """A queue of the test's own bound where `message` travels."""
        exchange_name = self.topology.exchange_for(message.exchange_kind).name
        exchange = await self.channel.get_exchange(exchange_name, ensure=False)
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        key = message.data.name if isinstance(message, TriggerFired) else message.routing_key
        await queue.bind(exchange, routing_key=key)
        return queue


@pytest.fixture
async def wire(settings: CommonSettings, topology: Topology) -> AsyncIterator[Wire]:
    registry = create_metrics("test").registry
    broker = create_broker(
        settings.amqp_url, service="test", registry=registry, prefetch=10, graceful_timeout=5
    )
    async with broker:
        await broker.connect()
        await declare_topology(broker, topology)
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            yield Wire(await connection.channel(), topology, Publisher(broker, topology))


async def received(queue: aio_pika.abc.AbstractQueue) -> AbstractIncomingMessage:
    return await eventually(
        lambda: queue.get(fail=False, no_ack=True), what=f"a message on {queue.name}", interval=0.05
    )


def assert_structured_cloudevent(raw: AbstractIncomingMessage, message: Envelope) -> None:
    assert raw.content_type == "application/cloudevents+json"
    assert raw.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert raw.message_id == message.id and raw.type == message.type
    assert not [name for name in raw.headers or {} if name.lower().startswith("cloudevents")]
    body = json.loads(raw.body)
    assert {"specversion", "id", "type", "source", "time", "datacontenttype", "data"} <= set(body)
    assert (body["specversion"], body["id"], body["type"], body["source"]) == (
        "1.0",
        message.id,
        message.type,
        message.source,
    )
    assert body["datacontenttype"] == "application/json"
    assert type(message).model_validate(body) == message


@pytest.mark.parametrize("cls", CONNECT_PUBLISHES, ids=[cls.__name__ for cls in CONNECT_PUBLISHES])
async def test_every_message_connect_publishes_is_a_structured_cloudevent(
    wire: Wire, cls: type[Envelope]
) -> None:
    message = sample_message(cls)
    queue = await wire.tap(message)

    if isinstance(message, RequestCommand):  # request/reply: nobody answers here, the request gives up
        request = asyncio.create_task(wire.publisher.request(message, timeout=30))
        raw = await received(queue)
        request.cancel()
    else:
        await wire.publisher.publish(message)
        raw = await received(queue)

    assert_structured_cloudevent(raw, message)


async def test_connect_trigger_publishes_a_structured_cloudevent(
    wire: Wire, settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMQP_URL", settings.amqp_url)
    monkeypatch.setenv("CONNECT_AMQP_PREFIX", settings.amqp_prefix)
    message = sample_message(TriggerFired)
    queue = await wire.tap(message)

    await cli_publish(message)

    assert_structured_cloudevent(await received(queue), message)


async def test_while_upgrading_the_same_bytes_can_be_labelled_application_json(
    wire: Wire, settings: CommonSettings
) -> None:
    upgrading = CommonSettings.model_validate(
        settings.model_dump(by_alias=True) | {"CONNECT_MESSAGE_CONTENT_TYPE": "application/json"}
    )
    runtime = ServiceRuntime.create("test", upgrading, prefetch=1)
    try:
        assert runtime.publisher.content_type == "application/json"  # every service's publisher follows it
    finally:
        await runtime.mongo.close()
    message = sample_message(RunFinished)
    queue = await wire.tap(message)

    await Publisher(
        wire.publisher.broker, wire.topology, content_type=upgrading.message_content_type
    ).publish(message)

    raw = await received(queue)
    assert raw.content_type == "application/json"  # what consumers of earlier releases read
    assert type(message).model_validate(json.loads(raw.body)) == message  # the same structured envelope
    with pytest.raises(ValueError, match="CONNECT_MESSAGE_CONTENT_TYPE"):
        CommonSettings.model_validate({"CONNECT_MESSAGE_CONTENT_TYPE": "text/plain"})
