"""The logsink's consumer of `logsink.events` as the AsyncAPI document shows it.

The queue is consumed by the logsink's own lean consumer (`consumer.py`); this FastStream subscriber
only declares it on the broker for the AsyncAPI document and is never started, so nothing consumes
the queue twice.
"""

from __future__ import annotations

from typing import Any

from faststream.rabbit.subscriber.usecase import RabbitSubscriber

from shared.runtime import ServiceRuntime


def register_subscribers(runtime: ServiceRuntime) -> RabbitSubscriber:
    subscriber = runtime.broker.subscriber(runtime.topology.logsink_events, title="logsink.events")

    @subscriber
    async def on_run_event(body: dict[str, Any]) -> None:
        """RunRequested, RunStarted, RunProgress, RunLog and RunFinished, in any order, any number of times."""
        raise RuntimeError("documentation only: the logsink's EventConsumer consumes logsink.events")

    documentation_only(subscriber)
    return subscriber


def documentation_only(subscriber: RabbitSubscriber) -> None:
    """Keep the subscriber (and its handler) in the AsyncAPI document, but never let it consume."""

    async def start() -> None:
        return None

    # The broker starts every subscriber it knows; this one must not open a consumer on the queue.
    setattr(subscriber, "start", start)  # noqa: B010
