"""Topology, publishing guarantees and dead-lettering against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
from faststream.rabbit import RabbitBroker, RabbitResponse

from shared.contracts import RunRequested
from shared.contracts.jobs import JobSnapshot
from shared.contracts.runs import RunJob, RunJobData, RunRequestedData, Trigger
from shared.errors import PermanentError, RetryableError
from shared.messaging import Publisher, create_broker, permanent_error_middleware
from shared.metrics import create_metrics
from shared.settings import CommonSettings
from shared.topology import Topology, declare_topology
from tests.support.broker import delete_topology, get_message, queue_depth
from tests.support.waiting import eventually

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


# --- request/reply with many calls in flight ------------------------------------------------------

ANSWER_DELAY = 0.2
SLOW = "slow-caller"  # the responder answers this caller's requests late


def run_job(requested_by: str = "test") -> RunJob:
    snapshot = run_requested().data.job
    return RunJob(source="test", data=RunJobData(job=snapshot, requested_by=requested_by))


def responder_for(settings: CommonSettings, topology: Topology, slow_delay: float = 1.0) -> RabbitBroker:
    """A scheduler stand-in answering like the scheduler does (FastStream reply), 64 commands at once."""
    responder = create_broker(
        settings.amqp_url, service="responder", registry=create_metrics("responder").registry,
        prefetch=64, graceful_timeout=5,
    )  # fmt: skip

    @responder.subscriber(topology.scheduler_commands)
    async def answer(command: RunJob) -> RabbitResponse:
        await asyncio.sleep(slow_delay if command.data.requested_by == SLOW else ANSWER_DELAY)
        return RabbitResponse(
            json.dumps({"echo": command.id}), mandatory=False, content_type="application/json"
        )

    return responder


async def echoed(publisher: Publisher, command: RunJob, timeout: float = 10) -> str:
    answer = await publisher.request(command, timeout=timeout)
    return str(answer["echo"])


async def test_concurrent_requests_are_answered_together_each_to_its_caller(
    settings: CommonSettings, topology: Topology
) -> None:
    caller, responder = broker_for(settings), responder_for(settings, topology)
    async with caller, responder:
        await caller.connect()
        await declare_topology(caller, topology)
        await responder.start()
        publisher = Publisher(caller, topology)
        commands = [run_job() for _ in range(50)]

        started = time.perf_counter()
        for command in commands:
            assert await echoed(publisher, command) == command.id
        sequential = time.perf_counter() - started

        started = time.perf_counter()
        answers = await asyncio.gather(*(echoed(publisher, command) for command in commands))
        concurrent = time.perf_counter() - started

    assert answers == [command.id for command in commands]  # each reply reached its own caller
    assert concurrent < 0.5 * sequential, f"concurrent {concurrent:.2f}s vs sequential {sequential:.2f}s"
    assert not publisher.requester.waiting  # nobody left waiting


async def test_a_timed_out_request_raises_and_its_late_answer_is_dropped(
    settings: CommonSettings, topology: Topology
) -> None:
    caller, responder = broker_for(settings), responder_for(settings, topology, slow_delay=1.0)
    async with caller, responder:
        await caller.connect()
        await declare_topology(caller, topology)
        await responder.start()
        publisher = Publisher(caller, topology)
        with pytest.raises(RetryableError, match=r"no answer to connect\.run\.job\.v1"):
            await publisher.request(run_job(SLOW), timeout=0.3)
        assert not publisher.requester.waiting
        in_flight = run_job(SLOW)  # still waiting when the late answer to the first request arrives
        assert await echoed(publisher, in_flight) == in_flight.id
        after = run_job()
        assert await echoed(publisher, after) == after.id


async def test_requests_work_again_after_the_broker_connects_anew(
    settings: CommonSettings, topology: Topology
) -> None:
    caller, responder = broker_for(settings), responder_for(settings, topology)
    publisher = Publisher(caller, topology)
    async with responder:
        async with caller:
            await caller.connect()
            await declare_topology(caller, topology)
            await responder.start()
            first = run_job()
            assert await echoed(publisher, first) == first.id
        async with caller:  # a new connection and channel: the replies are consumed there again
            await caller.connect()
            second = run_job()
            assert await echoed(publisher, second) == second.id


async def test_closing_fails_the_requests_still_waiting(settings: CommonSettings, topology: Topology) -> None:
    caller, responder = broker_for(settings), responder_for(settings, topology, slow_delay=5.0)
    async with caller, responder:
        await caller.connect()
        await declare_topology(caller, topology)
        await responder.start()
        publisher = Publisher(caller, topology)
        waiting = asyncio.create_task(publisher.request(run_job(SLOW), timeout=30))
        await eventually(lambda: publisher.requester.waiting, what="the request waiting for its reply")
        await publisher.close()
        with pytest.raises(RetryableError, match="stopping"):
            await waiting
        assert not publisher.requester.waiting


async def test_unroutable_request_raises(settings: CommonSettings) -> None:
    unbound = Topology(prefix=f"{settings.amqp_prefix}-unbound")  # its exchange has no queue bound
    caller = broker_for(settings)
    try:
        async with caller:
            await caller.connect()
            await caller.declare_exchange(unbound.commands)
            publisher = Publisher(caller, unbound)
            with pytest.raises(RetryableError, match="could not be routed"):
                await publisher.request(run_job(), timeout=2)
            assert not publisher.requester.waiting
    finally:
        await delete_topology(settings.amqp_url, unbound)
