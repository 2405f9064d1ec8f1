"""The logsink's own consumer of `logsink.events` against the real broker and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest
from fastapi import FastAPI

from services.logsink.config import LogsinkSettings
from services.logsink.main import build_app
from shared.contracts import RunLog
from shared.contracts.runs import RunLogData
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.broker import get_message, queue_depth
from tests.support.runlogs import stored_lines
from tests.support.waiting import eventually


@pytest.fixture
async def logsink(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[FastAPI]:
    app = build_app(settings, LogsinkSettings(batch_size=50, prefetch=200, flush_interval=0.05))
    async with app.router.lifespan_context(app):
        yield app
    await mongo.drop_database(settings.database("logsink"))


async def publish(amqp_url: str, topology: Topology, bodies: list[bytes], routing_key: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.events.name, ensure=False)
        for body in bodies:
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=routing_key,
            )


async def consumers(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)


def log_lines(run_id: str, count: int) -> list[bytes]:
    at = datetime.now(UTC)
    return [
        RunLog(source="t", data=RunLogData(run_id=run_id, seq=seq, message=f"line {seq}", at=at))
        .model_dump_json()
        .encode()
        for seq in range(1, count + 1)
    ]


async def test_one_consumer_stores_every_line_once_and_acknowledges_it(
    logsink: FastAPI, settings: CommonSettings, topology: Topology, mongo: MongoClient
) -> None:
    queue = topology.logsink_events.name
    # The documentation-only FastStream subscriber does not consume: only the lean consumer does.
    assert await consumers(settings.amqp_url, queue) == 1
    lines = log_lines("7.1", 520)
    await publish(settings.amqp_url, topology, lines + lines[:20], RunLog.routing_key)  # 20 duplicates
    logs = mongo[settings.database("logsink")]["run_logs"]

    async def stored_and_acknowledged() -> bool:
        return len(await stored_lines(logs)) == 520 and await queue_depth(settings.amqp_url, queue) == 0

    await eventually(
        stored_and_acknowledged, what="every line stored and the queue drained", timeout=30, interval=0.1
    )
    consumer = logsink.state.consumer

    async def all_settled() -> bool:
        return bool(consumer.window.unsettled == 0)

    await eventually(all_settled, what="every delivery acknowledged", timeout=30, interval=0.1)
    assert await stored_lines(logs, "7.1") == [("7.1", seq) for seq in range(1, 521)]


async def test_a_malformed_or_unknown_event_is_dead_lettered_with_its_reason(
    logsink: FastAPI, settings: CommonSettings, topology: Topology, mongo: MongoClient
) -> None:
    await publish(
        settings.amqp_url, topology, [b'{"type": "connect.run.log.v1", "id": "x"}'], RunLog.routing_key
    )
    dead = await get_message(settings.amqp_url, topology.dead_letters.name)
    assert "ValidationError" in str(dead.headers["x-connect-reason"])
    assert dead.headers["x-connect-queue"] == topology.logsink_events.name

    await publish(settings.amqp_url, topology, [b'{"type": "connect.run.unknown.v1"}'], RunLog.routing_key)
    dead = await get_message(settings.amqp_url, topology.dead_letters.name)
    assert dead.headers["x-connect-reason"] == (
        "UnknownEvent: logsink does not record events of type 'connect.run.unknown.v1'"
    )

    # Later events are not held back by the dead-lettered ones.
    await publish(settings.amqp_url, topology, log_lines("8.1", 3), RunLog.routing_key)
    logs = mongo[settings.database("logsink")]["run_logs"]

    async def stored() -> bool:
        return len(await stored_lines(logs, "8.1")) == 3

    await eventually(
        stored, what="the valid events after the poison ones are stored", timeout=30, interval=0.1
    )

    async def drained() -> bool:
        return await queue_depth(settings.amqp_url, topology.logsink_events.name) == 0

    await eventually(drained, what="the queue drained", timeout=30, interval=0.1)
