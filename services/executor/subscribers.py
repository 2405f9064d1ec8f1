"""Thin consumers: run requests from the work queue, stop requests from the control fanout."""

from __future__ import annotations

from faststream.rabbit import Channel

from services.executor.service import ExecutorService
from shared.contracts import RunRequested, StopRun
from shared.runtime import ServiceRuntime


def register_subscribers(runtime: ServiceRuntime, service: ExecutorService, executor_id: str) -> None:
    broker, topology = runtime.broker, runtime.topology
    # The handler returns as soon as the claim is durable (free slot or not), so a delivery is never
    # held while a run waits for capacity; the prefetch only bounds claims in flight at once.
    runs_channel = Channel(prefetch_count=service.settings.concurrency)

    @broker.subscriber(topology.executor_runs, channel=runs_channel, title="executor.runs")
    async def on_run_requested(request: RunRequested) -> None:
        """Acknowledged once the run's lease is claimed; the run waits for a slot in the executor."""
        await service.accept(request)

    @broker.subscriber(
        topology.executor_control(executor_id), exchange=topology.control, title="executor.control"
    )
    async def on_stop(command: StopRun) -> None:
        """Every executor hears every stop; the one running the run stops it at a safe point."""
        service.request_stop(command.data.run_id)
