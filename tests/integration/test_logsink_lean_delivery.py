"""The lean consumer takes deliveries from the channel's reader itself, not a task per message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from services.logsink.config import LogsinkSettings
from services.logsink.consumer import FRAMES_PER_DELIVERY, EventConsumer
from services.logsink.main import build_app
from shared.contracts import RunLog
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.integration.test_logsink_consumer import log_lines, publish
from tests.support.broker import queue_depth
from tests.support.runlogs import stored_lines
from tests.support.waiting import eventually

PREFETCH = 200


@pytest.fixture
async def lean_logsink(
    settings: CommonSettings, topology: Topology, mongo: MongoClient, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FastAPI, list[Any]]]:
    # aiormq's own path runs `_on_message` in a task per delivery: count what takes it.
    through_tasks: list[Any] = []
    original = EventConsumer._on_message

    async def counted(self: EventConsumer, window: Any, message: Any) -> None:
        through_tasks.append(message.delivery_tag)
        await original(self, window, message)

    monkeypatch.setattr(EventConsumer, "_on_message", counted)
    app = build_app(settings, LogsinkSettings(batch_size=50, prefetch=PREFETCH, flush_interval=0.05))
    async with app.router.lifespan_context(app):
        yield app, through_tasks
    await mongo.drop_database(settings.database("logsink"))


async def test_deliveries_are_received_inline_stored_once_and_acknowledged(
    lean_logsink: tuple[FastAPI, list[Any]], settings: CommonSettings, topology: Topology, mongo: MongoClient
) -> None:
    app, through_tasks = lean_logsink
    consumer = app.state.consumer
    # The channel buffers what the prefetch lets in, not aiormq's default of 10 frames.
    assert consumer.window.channel.frames.maxsize >= FRAMES_PER_DELIVERY * PREFETCH
    lines = log_lines("9.1", 430)
    await publish(settings.amqp_url, topology, lines + lines[:30], RunLog.routing_key)  # 30 redeliveries
    logs = mongo[settings.database("logsink")]["run_logs"]
    queue = topology.logsink_events.name

    async def stored_and_acknowledged() -> bool:
        drained = await queue_depth(settings.amqp_url, queue) == 0
        return drained and consumer.window.unsettled == 0 and len(await stored_lines(logs)) == 430

    await eventually(
        stored_and_acknowledged,
        what="every line stored and every delivery acknowledged",
        timeout=30,
        interval=0.1,
    )
    assert await stored_lines(logs, "9.1") == [("9.1", seq) for seq in range(1, 431)]
    assert through_tasks == []  # every delivery was received inline
