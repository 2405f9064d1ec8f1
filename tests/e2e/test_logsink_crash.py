"""A logsink killed with SIGKILL during a flood of events loses none that it acknowledged.

Messages are acknowledged only after their batch is durably written, so after the kill every message
that left the queue is stored; the rest are redelivered to the restarted logsink, which stores each
line exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest

from services.dev.processes import SystemProcesses
from shared.contracts import RunLog
from shared.contracts.runs import RunLogData
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.broker import delete_topology
from tests.support.runlogs import stored_lines
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

RUNS, LINES = 40, 500  # 20,000 events


@pytest.fixture
def logsink_processes(settings: CommonSettings) -> Iterator[SystemProcesses]:
    env = {
        "AMQP_URL": settings.amqp_url,
        "MONGO_URL": settings.mongo_url or "",
        "CONNECT_DB_PREFIX": settings.db_prefix,
        "CONNECT_AMQP_PREFIX": settings.amqp_prefix,
        "CONNECT_GRACEFUL_TIMEOUT": "5",
        "LOGSINK_PREFETCH": "2000",
        "LOGSINK_BATCH_SIZE": "500",
    }
    processes = SystemProcesses(env=env, log_dir=Path("test-artifacts") / "e2e-logs" / settings.db_prefix)
    try:
        yield processes
    finally:
        processes.stop()
        asyncio.run(delete_topology(settings.amqp_url, Topology(prefix=settings.amqp_prefix)))


def bodies() -> list[bytes]:
    at = datetime.now(UTC)
    return [
        RunLog(
            source="connect/executor",
            data=RunLogData(run_id=f"{run}.1", seq=seq, message=f"line {seq} of run {run}", at=at),
        )
        .model_dump_json()
        .encode()
        for run in range(1, RUNS + 1)
        for seq in range(1, LINES + 1)
    ]


async def publish_all(amqp_url: str, exchange_name: str, messages: list[bytes]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        for start in range(0, len(messages), 500):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            body,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            content_type="application/json",
                        ),
                        routing_key=RunLog.routing_key,
                    )
                    for body in messages[start : start + 500]
                )
            )


async def queue_state(amqp_url: str, queue: str) -> tuple[int, int]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)


async def test_sigkill_during_a_flood_loses_no_acknowledged_event(
    logsink_processes: SystemProcesses, settings: CommonSettings, mongo: MongoClient
) -> None:
    topology = Topology(prefix=settings.amqp_prefix)
    logs = mongo[settings.database("logsink")]["run_logs"]
    logsink_processes.start("logsink")
    await asyncio.to_thread(logsink_processes.wait_ready)
    messages = bodies()

    async def stored_count() -> int:
        return len(await stored_lines(logs))

    async def queue() -> tuple[int, int]:  # (messages ready or unacknowledged, consumers)
        return await queue_state(settings.amqp_url, topology.logsink_events.name)

    flood = asyncio.create_task(publish_all(settings.amqp_url, topology.events.name, messages))
    await eventually(
        stored_count,
        until=lambda n: n >= len(messages) // 5,
        what="the logsink to store a fifth of the flood before the kill",
        timeout=120,
    )
    logsink_processes.kill("logsink")  # SIGKILL mid-flood
    killed_at = await stored_count()
    await asyncio.wait_for(flood, 120)

    # The broker requeues what the dead consumer held; what is not in the queue was acknowledged.
    in_queue, _ = await eventually(
        queue, until=lambda state: state[1] == 0, what="the dead consumer gone", timeout=60, interval=0.1
    )
    stored = await stored_count()
    acknowledged = len(messages) - in_queue
    assert killed_at < len(messages), "the kill came after the flood was stored"
    assert in_queue > 0
    assert stored >= acknowledged, f"acknowledged {acknowledged} but only {stored} stored"

    logsink_processes.start("logsink")
    await asyncio.to_thread(logsink_processes.wait_ready)
    count = await eventually(
        stored_count,
        until=lambda n: n >= len(messages),
        what=f"all {len(messages)} lines stored after the restart",
        timeout=180,
        interval=0.2,
    )
    assert count == len(messages)
    for run in (1, RUNS):
        run_id = f"{run}.1"
        assert await stored_lines(logs, run_id) == [(run_id, seq) for seq in range(1, LINES + 1)]
    await eventually(
        queue, until=lambda state: state[0] == 0, what="the queue drained", timeout=30, interval=0.2
    )
    await mongo.drop_database(settings.database("logsink"))
