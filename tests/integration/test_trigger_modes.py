"""Another system fires a trigger the way docs/scheduling.md tells it to, with raw aio-pika: as a
structured-mode or a binary-mode CloudEvent (AMQP binding), or as the plain JSON envelope of earlier
releases. The scheduler starts the subscribed job each time; a binary event whose data is not JSON is
dead-lettered."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractExchange

from shared.contracts.jobs import OnEventSchedule
from tests.support.broker import get_message
from tests.support.scheduler_harness import Harness, job_changed, snapshot
from tests.support.waiting import eventually

TYPE = "connect.trigger.fired.v1"


def trigger_data(name: str) -> dict[str, object]:
    return {"name": name, "idempotency_key": f"{name}-2026-03-01", "params": {"file": f"{name}.csv"}}


def structured(name: str, content_type: str) -> aio_pika.Message:
    envelope = {"specversion": "1.0", "id": uuid.uuid4().hex, "type": TYPE, "source": "crm/nightly-export",
                "time": "2026-03-01T02:15:00Z", "data": trigger_data(name)}  # fmt: skip
    return aio_pika.Message(
        json.dumps(envelope).encode(),
        content_type=content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def binary(name: str, content_type: str = "application/json", data: bytes | None = None) -> aio_pika.Message:
    headers: dict[str, object] = {"cloudEvents_specversion": "1.0", "cloudEvents_id": uuid.uuid4().hex,
                                  "cloudEvents_type": TYPE, "cloudEvents_source": "crm/nightly-export"}  # fmt: skip
    body = json.dumps(trigger_data(name)).encode() if data is None else data
    return aio_pika.Message(
        body, headers=headers, content_type=content_type, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
    )


MODES = {
    "structured": lambda name: structured(name, "application/cloudevents+json"),
    "structured-with-charset": lambda name: structured(name, "application/cloudevents+json; charset=utf-8"),
    "binary": binary,
    "plain-json-envelope": lambda name: structured(name, "application/json"),
}


@pytest.fixture
async def triggers(scheduler: Harness) -> AsyncIterator[AbstractExchange]:
    connection = await aio_pika.connect(scheduler.settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield await channel.get_exchange(scheduler.topology.triggers.name, ensure=False)


@pytest.mark.parametrize("mode", MODES)
async def test_a_trigger_published_as_the_docs_say_starts_the_job(
    scheduler: Harness, triggers: AbstractExchange, mode: str
) -> None:
    name = f"crm.{mode}"
    await scheduler.publish(job_changed(snapshot(71, OnEventSchedule(trigger=name))))
    await scheduler.until_known("job:71")

    await triggers.publish(MODES[mode](name), routing_key=name, mandatory=True)

    run = await eventually(lambda: scheduler.runs_of(71), what="the triggered run", timeout=15)
    assert run[0].data.trigger == "event" and run[0].data.trigger_params == {"file": f"{name}.csv"}


async def test_a_binary_trigger_whose_data_is_not_json_is_dead_lettered(
    scheduler: Harness, triggers: AbstractExchange
) -> None:
    await triggers.publish(binary("crm.text", "text/plain", b"name=crm.text"), routing_key="crm.text")

    dead = await get_message(scheduler.settings.amqp_url, scheduler.topology.dead_letters.name)
    assert dead.headers["x-connect-queue"] == scheduler.topology.scheduler_triggers.name
    assert "must be JSON, not text/plain" in str(dead.headers["x-connect-reason"])
    assert dead.body == b"name=crm.text"
