"""The logsink's consumer of `logsink.events` as the AsyncAPI document shows it.

The queue is consumed by the logsink's own lean consumer (`consumer.py`); this subscriber lives on the
runtime's documentation broker, which is never connected (`ServiceRuntime.documents_consuming`), so
nothing consumes the queue twice.
"""

from __future__ import annotations

from typing import Any

from faststream.rabbit.subscriber.usecase import RabbitSubscriber

from shared.runtime import ServiceRuntime


def register_subscribers(runtime: ServiceRuntime) -> RabbitSubscriber:
    subscriber = runtime.documents_consuming(runtime.topology.logsink_events, title="logsink.events")

    @subscriber
    async def on_run_event(body: dict[str, Any]) -> None:
        """RunRequested, RunStarted, RunProgress, RunLog and RunFinished, in any order, any number of times."""
        raise RuntimeError("documentation only: the logsink's EventConsumer consumes logsink.events")

    return subscriber
