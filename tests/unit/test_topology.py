"""The broker topology: queue arguments, bindings and prefixes, without a broker (routing: on the real
broker, `tests/integration/test_topology_routing.py`)."""

from __future__ import annotations

import pytest
from faststream.rabbit import RabbitQueue

from shared.topology import DELIVERY_LIMIT, Topology

PREFIXES = ["", "t1234.", "iso_"]


def work_queues(topology: Topology) -> tuple[RabbitQueue, ...]:
    return (
        topology.catalog_commands,
        topology.scheduler_commands,
        topology.scheduler_triggers,
        topology.scheduler_events,
        topology.executor_runs,
        topology.logsink_events,
    )


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_work_queue_is_a_durable_quorum_queue_that_dead_letters(prefix: str) -> None:
    topology = Topology(prefix=prefix)

    for queue in work_queues(topology):
        arguments = queue.arguments or {}
        assert queue.durable, queue.name
        assert not queue.exclusive, queue.name
        assert not queue.auto_delete, queue.name
        assert arguments.get("x-queue-type") == "quorum", queue.name
        assert arguments.get("x-dead-letter-exchange") == topology.dead_letters_exchange.name, queue.name
        limit = arguments.get("x-delivery-limit")
        assert isinstance(limit, int), queue.name
        assert not isinstance(limit, bool), queue.name
        assert limit == DELIVERY_LIMIT, queue.name


def test_delivery_limit_is_configurable() -> None:
    topology = Topology(delivery_limit=2)

    assert {(q.arguments or {}).get("x-delivery-limit") for q in work_queues(topology)} == {2}


def test_work_queues_are_the_durable_queues_besides_the_dead_letter_queue() -> None:
    topology = Topology()
    durable = {q.name for q in topology.durable_queues}

    assert durable == {q.name for q in work_queues(topology)} | {topology.dead_letters.name}


def test_dead_letter_queue_is_durable_quorum_and_does_not_dead_letter_again() -> None:
    topology = Topology()
    arguments = topology.dead_letters.arguments or {}

    assert topology.dead_letters.durable
    assert arguments.get("x-queue-type") == "quorum"
    assert "x-dead-letter-exchange" not in arguments


def test_every_exchange_is_durable_with_a_unique_name() -> None:
    topology = Topology()
    names = [exchange.name for exchange in topology.exchanges]

    assert all(exchange.durable for exchange in topology.exchanges)
    assert len(set(names)) == len(names)
    assert topology.dead_letters_exchange.name in names


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_binding_joins_a_declared_durable_queue_to_a_declared_exchange(prefix: str) -> None:
    topology = Topology(prefix=prefix)
    queues = {q.name: q for q in topology.durable_queues}
    exchanges = {ex.name for ex in topology.exchanges}

    assert topology.bindings
    for binding in topology.bindings:
        assert binding.queue in queues, binding
        assert queues[binding.queue].durable, binding
        assert binding.exchange in exchanges, binding


def test_every_durable_queue_is_bound() -> None:
    topology = Topology()

    assert {b.queue for b in topology.bindings} == {q.name for q in topology.durable_queues}


@pytest.mark.parametrize("prefix", ["t1234.", "iso_"])
def test_prefix_is_applied_to_every_name(prefix: str) -> None:
    plain, prefixed = Topology(), Topology(prefix=prefix)

    assert [prefix + ex.name for ex in plain.exchanges] == [ex.name for ex in prefixed.exchanges]
    assert [prefix + q.name for q in plain.durable_queues] == [q.name for q in prefixed.durable_queues]
    assert prefixed.executor_control("ex-1").name == prefix + plain.executor_control("ex-1").name
    assert [(prefix + b.queue, prefix + b.exchange, b.routing_key) for b in plain.bindings] == [
        (b.queue, b.exchange, b.routing_key) for b in prefixed.bindings
    ]
    for queue in work_queues(prefixed):
        assert (queue.arguments or {})["x-dead-letter-exchange"] == prefix + "connect.dlx"


def test_two_prefixes_share_no_name() -> None:
    first, second = Topology(prefix="a."), Topology(prefix="b.")

    def names(t: Topology) -> set[str]:
        return {ex.name for ex in t.exchanges} | {q.name for q in t.durable_queues}

    assert not names(first) & names(second)


def test_executor_control_queue_is_exclusive_and_per_executor() -> None:
    topology = Topology(prefix="p.")
    first, second = topology.executor_control("ex-1"), topology.executor_control("ex-2")

    assert first.exclusive
    assert first.auto_delete
    assert not first.durable
    assert first.name != second.name
    assert "ex-1" in first.name
    assert first.name not in {q.name for q in topology.durable_queues}
