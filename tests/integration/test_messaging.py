"""Topology, publishing guarantees and dead-lettering against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from faststream.rabbit import RabbitBroker

from shared.contracts import RunRequested
from shared.contracts.jobs import JobSnapshot
from shared.contracts.runs import RunRequestedData, Trigger
from shared.errors import PermanentError, RetryableError
from shared.messaging import Publisher, create_broker, permanent_error_middleware
from shared.metrics import create_metrics
from shared.settings import CommonSettings
from shared.topology import Topology, declare_topology
from tests.support.broker import get_message, queue_depth

REQUESTED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def run_requested(run_id: str = "7.1") -> RunRequested:
    snapshot = JobSnapshot.model_validate(
        {
            "job_id": 7,
            "name": "job",
            "job_type": "import",
            "spec": {
                "kind": "import",
                "source": {"kind": "sftp", "connection_id": 1, "path": "a.csv"},
                "mapping": [{"column": "id", "field": "id"}],
                "target": {"kind": "custom", "table": "t"},
            },
        }
    )
    data = RunRequestedData(
        run_id=run_id, job=snapshot, trigger=Trigger.ON_DEMAND, requested_by="test", requested_at=REQUESTED_AT
    )
    return RunRequested(source="test", data=data)


def broker_for(settings: CommonSettings) -> RabbitBroker:
    return create_broker(
        settings.amqp_url,
        service="test",
        registry=create_metrics("test").registry,
        prefetch=10,
        graceful_timeout=5,
    )


async def test_topology_is_declared_idempotently_and_routes_run_events(
    settings: CommonSettings, topology: Topology
) -> None:
    broker = broker_for(settings)
    async with broker:
        await broker.connect()
        await declare_topology(broker, topology)
        await declare_topology(broker, topology)  # a second start-up changes nothing
        await Publisher(broker, topology).publish(run_requested())
    executor_message = await get_message(settings.amqp_url, topology.executor_runs.name)
    logsink_message = await get_message(settings.amqp_url, topology.logsink_events.name)
    for message in (executor_message, logsink_message):
        assert RunRequested.model_validate_json(message.body).data.run_id == "7.1"
        assert message.delivery_mode == 2  # persistent
        assert message.type == "connect.run.requested.v1"


async def test_unroutable_publish_raises(settings: CommonSettings, topology: Topology) -> None:
    broker = broker_for(settings)
    async with broker:
        await broker.connect()
        await declare_topology(broker, topology)
        publisher = Publisher(broker, topology)
        message = run_requested()
        with pytest.raises(RetryableError, match="not routed"):
            await publisher._publish(message, topology.events, "no.queue.bound.here")


async def test_permanent_failure_is_dead_lettered_with_its_reason(
    settings: CommonSettings, topology: Topology
) -> None:
    broker = broker_for(settings)
    counted: list[str] = []
    publisher = Publisher(broker, topology, count_dead_letter=counted.append)
    broker.add_middleware(permanent_error_middleware(publisher))
    calls: list[str] = []

    @broker.subscriber(topology.executor_runs)
    async def handler(request: RunRequested) -> None:
        calls.append(request.data.run_id)
        raise PermanentError("the file can never be read")

    async with broker:
        await broker.connect()
        await declare_topology(broker, topology)
        await broker.start()
        message = run_requested("7.2")
        await publisher.publish(message)
        dead = await get_message(settings.amqp_url, topology.dead_letters.name)
    assert calls == ["7.2"]  # not redelivered: permanent errors do not loop
    assert dead.headers["x-connect-reason"] == "PermanentError: the file can never be read"
    assert dead.headers["x-connect-queue"] == topology.executor_runs.name
    assert json.loads(dead.body)["data"]["run_id"] == "7.2"
    assert dead.message_id == message.id and dead.type == message.type  # the original, not a new one
    assert counted == ["permanent"]


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "reason"),
    [
        (b'{"type": "connect.run.requested.v1"}', "application/json", "invalid", "ValidationError"),
        (b"not JSON at all {", "application/json", "undecodable", "JSONDecodeError"),
        (bytes(range(256)), None, "undecodable", "the body is not JSON (256 bytes"),
        (b"[1, 2]", "application/json", "invalid", "the body is not a JSON object"),
    ],
)
async def test_undecodable_message_is_dead_lettered_at_its_first_delivery(
    settings: CommonSettings,
    topology: Topology,
    body: bytes,
    content_type: str | None,
    kind: str,
    reason: str,
) -> None:
    broker = broker_for(settings)
    counted: list[str] = []
    publisher = Publisher(broker, topology, count_dead_letter=counted.append)
    broker.add_middleware(permanent_error_middleware(publisher))

    @broker.subscriber(topology.executor_runs)
    async def handler(request: RunRequested) -> None:
        raise AssertionError("never called with an invalid message")

    async with broker:
        await broker.connect()
        await declare_topology(broker, topology)
        await broker.start()
        await broker.publish(
            body, exchange=topology.events, routing_key="run.requested", message_id="poison-1",
            content_type=content_type,
        )  # fmt: skip
        dead = await get_message(settings.amqp_url, topology.dead_letters.name)
    assert reason in str(dead.headers["x-connect-reason"])
    assert dead.headers["x-connect-dead-letter"] == kind
    assert dead.headers["x-connect-delivery-count"] == 0  # its first delivery: no redelivery loop
    assert "x-death" not in dead.headers  # not dead-lettered by the queue's delivery limit
    assert dead.message_id == "poison-1" and dead.body == body
    assert counted == [kind]


async def test_retryable_failure_is_retried_then_dead_lettered_at_the_delivery_limit(
    settings: CommonSettings, topology: Topology
) -> None:
    broker = broker_for(settings)
    counted: list[str] = []
    publisher = Publisher(broker, topology, count_dead_letter=counted.append)
    broker.add_middleware(permanent_error_middleware(publisher))
    attempts: list[int] = []

    @broker.subscriber(topology.executor_runs)
    async def handler(request: RunRequested) -> None:
        attempts.append(1)
        raise RetryableError("database unreachable")

    async with broker:
        await broker.connect()
        await declare_topology(broker, topology)
        await broker.start()
        await publisher.publish(run_requested("7.3"))
        dead = await get_message(settings.amqp_url, topology.dead_letters.name, timeout=20)
        await asyncio.sleep(0.5)
    assert len(attempts) == topology.delivery_limit + 1  # first delivery + the limit of redeliveries
    assert json.loads(dead.body)["data"]["run_id"] == "7.3"
    # The last delivery is dead-lettered by Connect, with the reason, not silently by the queue.
    assert dead.headers["x-connect-reason"] == (
        "delivery limit reached after 6 deliveries: RetryableError: database unreachable"
    )
    assert dead.headers["x-connect-dead-letter"] == "delivery_limit" and "x-death" not in dead.headers
    assert counted == ["delivery_limit"]
    assert await queue_depth(settings.amqp_url, topology.executor_runs.name) == 0
