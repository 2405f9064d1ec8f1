"""Where each message lands, on the real broker: the topology declared, a message published per case, and the
queues that received it read back (issue #15: no hand-written topic matcher)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from faststream.rabbit import RabbitBroker, RabbitExchange

from shared.contracts import (
    GroupChanged,
    JobChanged,
    RunFinished,
    RunJob,
    RunLog,
    RunProgress,
    RunRequested,
    RunStarted,
)
from shared.topology import Topology, declare_topology
from tests.support.broker import delete_topology


class Routing:
    """A prefixed topology on the shared broker and a way to ask where a message lands."""

    def __init__(self, topology: Topology, channel: aio_pika.abc.AbstractChannel) -> None:
        self.topology = topology
        self.channel = channel

    async def queues_for(self, exchange: RabbitExchange, routing_key: str) -> set[str]:
        """The durable queues one message published to `exchange` with `routing_key` reached."""
        target = await self.channel.get_exchange(exchange.name, ensure=False)
        await target.publish(aio_pika.Message(b"{}", message_id=uuid.uuid4().hex), routing_key=routing_key)
        reached = set()
        for queue in self.topology.durable_queues:
            declared = await self.channel.get_queue(queue.name, ensure=False)
            message = await declared.get(fail=False, no_ack=True)
            if message is not None:
                reached.add(queue.name)
                await declared.purge()
        return reached


@pytest.fixture
async def routing(amqp_url: str) -> AsyncIterator[Routing]:
    topology = Topology(prefix=f"route{uuid.uuid4().hex[:8]}.")
    async with RabbitBroker(amqp_url) as broker:
        await broker.connect()
        await declare_topology(broker, topology)
    connection = await aio_pika.connect(amqp_url)
    try:
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            yield Routing(topology, channel)
    finally:
        await delete_topology(amqp_url, topology)


async def test_run_requested_reaches_the_executors_and_the_logsink(routing: Routing) -> None:
    t = routing.topology
    assert await routing.queues_for(t.events, RunRequested.routing_key) == {
        t.executor_runs.name,
        t.logsink_events.name,
    }


@pytest.mark.parametrize("event", [RunStarted, RunProgress, RunLog, RunFinished])
async def test_every_other_run_event_reaches_the_logsink_and_not_the_executors(
    routing: Routing, event: type[RunStarted]
) -> None:
    t = routing.topology
    reached = await routing.queues_for(t.events, event.routing_key)
    assert t.logsink_events.name in reached and t.executor_runs.name not in reached


async def test_the_scheduler_receives_run_now_commands_finished_runs_and_catalog_changes(
    routing: Routing,
) -> None:
    t = routing.topology
    assert await routing.queues_for(t.commands, RunJob.routing_key) == {t.scheduler_commands.name}
    for key in (RunFinished.routing_key, JobChanged.routing_key, GroupChanged.routing_key):
        assert t.scheduler_events.name in await routing.queues_for(t.events, key), key


async def test_a_routing_key_nobody_binds_reaches_no_queue(routing: Routing) -> None:
    t = routing.topology
    assert await routing.queues_for(t.events, "run.log.extra") == set()
    assert await routing.queues_for(t.events, "runs.log") == set()


async def test_whatever_is_dead_lettered_reaches_the_dead_letter_queue(routing: Routing) -> None:
    t = routing.topology
    assert await routing.queues_for(t.dead_letters_exchange, "anything") == {t.dead_letters.name}
