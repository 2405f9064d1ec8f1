"""Broker helpers for tests: remove a test's topology, read what reached a queue."""

from __future__ import annotations

import contextlib

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.topology import Topology
from tests.support.waiting import eventually


async def delete_topology(amqp_url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for queue in topology.durable_queues:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue.name)
        for exchange in topology.exchanges:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange.name)


async def get_message(amqp_url: str, queue_name: str, timeout: float = 10.0) -> AbstractIncomingMessage:
    """The next message on a queue (acknowledged), waiting up to `timeout`."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        return await eventually(
            lambda: queue.get(fail=False, no_ack=True),
            what=f"a message on {queue_name}",
            timeout=timeout,
            interval=0.1,
        )


async def queue_depth(amqp_url: str, queue_name: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue_name, passive=True)
        return int(declared.declaration_result.message_count or 0)
