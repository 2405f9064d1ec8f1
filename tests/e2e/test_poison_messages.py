"""Poison messages against the four services as processes (issue #13 item 3).

A body that is not JSON, a binary body and JSON of the wrong shape are published to each service's main
queue (and the executors' control fanout, the scheduler's event and trigger queues) with a known
message id. Each must reach the dead-letter queue
once, at its first delivery (not by the delivery limit after six), with `x-connect-reason` and its
original message id; each service counts it in `connect_dead_letters_total`; the services keep working.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import Expire, RunFinished, RunJob, RunRequested, StopRun, TriggerFired
from shared.topology import Topology
from tests.e2e.conftest import RunningSystem
from tests.e2e.test_import_run import create_job, write_csv
from tests.support.api import wait_for_run
from tests.support.servers import Sshd

pytestmark = pytest.mark.e2e

BINARY = bytes(range(256)) * 4  # not UTF-8, not JSON


@dataclass(frozen=True)
class Poison:
    service: str
    queue: str  # where it is consumed (and what the dead letter names as its source)
    exchange: str  # "" = the default exchange, routing straight to `queue`
    body: bytes
    content_type: str | None
    reason: str  # the metric label it is counted under
    message_id: str


def wrong_shape(message_type: str) -> bytes:
    return f'{{"type": "{message_type}", "id": "x", "data": {{"nonsense": true}}}}'.encode()


def poisons(topology: Topology, executor_control: str) -> list[Poison]:
    targets = [
        ("executor", topology.executor_runs.name, "", RunRequested),
        ("executor", executor_control, topology.control.name, StopRun),
        ("scheduler", topology.scheduler_commands.name, "", RunJob),
        ("scheduler", topology.scheduler_events.name, "", RunFinished),
        ("scheduler", topology.scheduler_triggers.name, "", TriggerFired),
        ("catalog", topology.catalog_commands.name, "", Expire),
        ("logsink", topology.logsink_events.name, "", RunFinished),
    ]
    made = []
    for service, queue, exchange, model in targets:
        message_type = model.model_fields["type"].default
        for body, content_type, reason in (
            (b"this is not JSON {", "application/json", "undecodable"),
            (BINARY, None, "undecodable"),
            (wrong_shape(message_type), "application/json", "invalid"),
        ):
            made.append(
                Poison(service, queue, exchange, body, content_type, reason, f"poison-{uuid.uuid4()}")
            )
    return made


async def publish(amqp_url: str, items: list[Poison]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for item in items:
            exchange = (
                await channel.get_exchange(item.exchange, ensure=False)
                if item.exchange
                else channel.default_exchange
            )
            message = aio_pika.Message(
                item.body, message_id=item.message_id, content_type=item.content_type, delivery_mode=2
            )
            await exchange.publish(message, routing_key="" if item.exchange else item.queue)


async def dead_letters(
    amqp_url: str, queue: str, wanted: set[str], timeout: float
) -> list[AbstractIncomingMessage]:
    """Take messages off the dead-letter queue until every wanted message id was seen (or `timeout`),
    then whatever else it holds."""
    taken: list[AbstractIncomingMessage] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.get_queue(queue, ensure=False)
        deadline = time.monotonic() + timeout
        while True:
            message = await dlq.get(fail=False, no_ack=True)
            if message is not None:
                taken.append(message)
            elif wanted <= {m.message_id for m in taken} or time.monotonic() > deadline:
                return taken
            else:
                await asyncio.sleep(0.1)


def dead_letter_counts(metrics_text: str) -> dict[tuple[str, str], float]:
    counts = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "connect_dead_letters":
            for sample in family.samples:
                if sample.name == "connect_dead_letters_total":
                    counts[(sample.labels["service"], sample.labels["reason"])] = sample.value
    return counts


async def service_counts(system: RunningSystem) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for key, process in system.processes.processes.items():
            response = await http.get(f"{process.url}/metrics")
            assert response.status_code == 200, key
            counts.update(dead_letter_counts(response.text))
    return counts


@pytest.mark.timeout(180)
async def test_poison_messages_are_dead_lettered_once_at_first_delivery_with_reason_and_id(
    api: httpx.AsyncClient, system: RunningSystem, sshd: Sshd, sftp_connection: int, unique: str
) -> None:
    topology = Topology(prefix=system.settings.amqp_prefix)
    amqp_url = system.settings.amqp_url
    # Stop requests reach each executor's own control queue (`executor.control.<executor id>`).
    items = poisons(topology, topology.name("executor.control."))
    await publish(amqp_url, items)

    by_id = {item.message_id: item for item in items}
    taken = await dead_letters(amqp_url, topology.dead_letters.name, set(by_id), timeout=60)
    seen = [m for m in taken if m.message_id in by_id]
    assert sorted(m.message_id for m in seen) == sorted(by_id), "every poison message dead-lettered once"
    for message in seen:
        item = by_id[message.message_id or ""]
        headers = message.headers or {}
        assert headers.get("x-connect-reason"), (item, headers)
        assert str(headers.get("x-connect-queue")).startswith(item.queue), (item, headers)
        assert headers.get("x-connect-dead-letter") == item.reason, (item, headers)
        assert headers.get("x-connect-delivery-count") == 0, (item, headers)  # at its first delivery
        assert "x-death" not in headers, (item, headers)  # not by the queue's delivery limit
        assert message.body == item.body

    expected: dict[tuple[str, str], float] = {}
    for item in items:
        expected[(item.service, item.reason)] = expected.get((item.service, item.reason), 0) + 1
    counts = await service_counts(system)
    assert {key: counts.get(key) for key in expected} == expected
    for service in ("executor", "scheduler", "catalog", "logsink"):
        assert counts[(service, "delivery_limit")] == 0

    # The services keep working: a normal run afterwards succeeds.
    write_csv(sshd, f"{unique}/after.csv", [["id", "email", "points"], ["C1", "c1@example.com", "1"]])
    job_id, _ = await create_job(api, unique, sftp_connection, f"{unique}/after.csv")
    started = await api.post(f"/jobs/{job_id}/run")
    assert started.status_code == 202, started.text
    run = await wait_for_run(api, started.json()["run_id"])
    assert run["status"] == "succeeded", run
    # Nothing looped back: no second copy of a poison message arrived meanwhile.
    later = await dead_letters(amqp_url, topology.dead_letters.name, set(), timeout=0)
    assert [m.message_id for m in later if m.message_id in by_id] == []
