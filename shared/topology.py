"""Every exchange, queue, routing key and binding of Connect, in one place.

Names take an optional prefix (`CONNECT_AMQP_PREFIX`) so tests can run isolated topologies side by
side on one broker. `declare_topology` is idempotent and runs at every service's start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas.queue import QuorumQueueArgs

from shared.contracts import (
    Expire,
    GroupRunFinished,
    GroupRunStarted,
    RunFinished,
    RunGroup,
    RunJob,
    RunLog,
    RunProgress,
    RunRequested,
    RunStarted,
    StopGroupRun,
)

# Redeliveries of one message before it is dead-lettered instead of looping (poison messages).
DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class Binding:
    queue: str
    exchange: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    prefix: str = ""
    delivery_limit: int = DELIVERY_LIMIT
    bindings: tuple[Binding, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bindings", self._bindings())

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    # --- exchanges ---------------------------------------------------------------------------------
    @property
    def commands(self) -> RabbitExchange:
        return RabbitExchange(self.name("connect.commands"), type=ExchangeType.DIRECT, durable=True)

    @property
    def events(self) -> RabbitExchange:
        return RabbitExchange(self.name("connect.events"), type=ExchangeType.TOPIC, durable=True)

    @property
    def control(self) -> RabbitExchange:
        return RabbitExchange(self.name("connect.control"), type=ExchangeType.FANOUT, durable=True)

    @property
    def triggers(self) -> RabbitExchange:
        """Public: other systems publish trigger events here (routing key = trigger name)."""
        return RabbitExchange(self.name("connect.triggers"), type=ExchangeType.TOPIC, durable=True)

    @property
    def dead_letters_exchange(self) -> RabbitExchange:
        return RabbitExchange(self.name("connect.dlx"), type=ExchangeType.FANOUT, durable=True)

    def exchange_for(self, kind: str) -> RabbitExchange:
        """The exchange a message of this kind travels on (see `Envelope.exchange_kind`)."""
        return {
            "events": self.events,
            "commands": self.commands,
            "control": self.control,
            "triggers": self.triggers,
        }[kind]

    @property
    def exchanges(self) -> tuple[RabbitExchange, ...]:
        return (self.commands, self.events, self.control, self.triggers, self.dead_letters_exchange)

    # --- queues ------------------------------------------------------------------------------------
    def _work_queue(self, base: str) -> RabbitQueue:
        arguments: QuorumQueueArgs = {
            "x-dead-letter-exchange": self.name("connect.dlx"),
            "x-delivery-limit": self.delivery_limit,
            # Dead-letter at least once: a poison message is kept, never dropped on the way.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        return RabbitQueue(self.name(base), queue_type=QueueType.QUORUM, durable=True, arguments=arguments)

    @property
    def catalog_commands(self) -> RabbitQueue:
        return self._work_queue("catalog.commands")

    @property
    def scheduler_triggers(self) -> RabbitQueue:
        """Trigger events other systems publish on `connect.triggers`."""
        return self._work_queue("scheduler.triggers")

    @property
    def scheduler_commands(self) -> RabbitQueue:
        return self._work_queue("scheduler.commands")

    @property
    def scheduler_events(self) -> RabbitQueue:
        return self._work_queue("scheduler.events")

    @property
    def executor_runs(self) -> RabbitQueue:
        return self._work_queue("executor.runs")

    @property
    def logsink_events(self) -> RabbitQueue:
        return self._work_queue("logsink.events")

    @property
    def dead_letters(self) -> RabbitQueue:
        return RabbitQueue(self.name("connect.dead-letters"), queue_type=QueueType.QUORUM, durable=True)

    def executor_control(self, executor_id: str) -> RabbitQueue:
        """Each executor's own queue on the control fanout (stop requests reach every executor)."""
        return RabbitQueue(
            self.name(f"executor.control.{executor_id}"), exclusive=True, auto_delete=True, durable=False
        )

    @property
    def durable_queues(self) -> tuple[RabbitQueue, ...]:
        return (
            self.catalog_commands,
            self.scheduler_commands,
            self.scheduler_triggers,
            self.scheduler_events,
            self.executor_runs,
            self.logsink_events,
            self.dead_letters,
        )

    def _bindings(self) -> tuple[Binding, ...]:
        n = self.name
        events, commands = n("connect.events"), n("connect.commands")
        return (
            Binding(n("catalog.commands"), commands, Expire.routing_key),
            Binding(n("scheduler.commands"), commands, RunJob.routing_key),
            Binding(n("scheduler.commands"), commands, RunGroup.routing_key),
            Binding(n("scheduler.commands"), commands, StopGroupRun.routing_key),
            Binding(n("scheduler.triggers"), n("connect.triggers"), "#"),
            Binding(n("scheduler.events"), events, RunFinished.routing_key),
            Binding(n("scheduler.events"), events, "catalog.#"),
            Binding(n("executor.runs"), events, RunRequested.routing_key),
            Binding(n("logsink.events"), events, RunRequested.routing_key),
            Binding(n("logsink.events"), events, RunStarted.routing_key),
            Binding(n("logsink.events"), events, RunProgress.routing_key),
            Binding(n("logsink.events"), events, RunLog.routing_key),
            Binding(n("logsink.events"), events, RunFinished.routing_key),
            Binding(n("logsink.events"), events, GroupRunStarted.routing_key),
            Binding(n("logsink.events"), events, GroupRunFinished.routing_key),
            Binding(n("connect.dead-letters"), n("connect.dlx"), ""),
        )


async def declare_topology(broker: RabbitBroker, topology: Topology) -> None:
    """Declare every exchange, durable queue and binding; safe to run any number of times."""
    exchanges = {ex.name: await broker.declare_exchange(ex) for ex in topology.exchanges}
    queues = {q.name: await broker.declare_queue(q) for q in topology.durable_queues}
    for binding in topology.bindings:
        await queues[binding.queue].bind(exchanges[binding.exchange], routing_key=binding.routing_key)
