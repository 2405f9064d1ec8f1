"""Thin consumer: every run event goes to the service, which records it idempotently."""

from __future__ import annotations

from typing import Any

from services.logsink.service import LogsinkService
from shared.runtime import ServiceRuntime


def register_subscribers(runtime: ServiceRuntime, service: LogsinkService) -> None:
    @runtime.broker.subscriber(runtime.topology.logsink_events, title="logsink.events")
    async def on_run_event(body: dict[str, Any]) -> None:
        """RunRequested, RunStarted, RunProgress, RunLog and RunFinished, in any order, any number of times."""
        await service.record(body)
