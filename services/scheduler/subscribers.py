"""Thin consumers: decode, call the service, answer."""

from __future__ import annotations

from typing import Any

from faststream.rabbit import RabbitResponse

from services.scheduler.service import SchedulerService
from shared.contracts import RunFinished, RunJob, RunJobReply
from shared.runtime import ServiceRuntime


def register_subscribers(runtime: ServiceRuntime, service: SchedulerService) -> None:
    broker, topology = runtime.broker, runtime.topology

    @broker.subscriber(topology.scheduler_commands, title="scheduler.commands")
    async def on_run_job(command: RunJob) -> RabbitResponse:
        """Run now (request/reply): the reply (`RunJobReply`) carries the new `JobID.RunID` or the refusal."""
        reply: RunJobReply = await service.run_now(command)
        # Not mandatory: RabbitMQ reports publishes to the direct reply-to pseudo-queue as unroutable
        # even when it delivers them.
        return RabbitResponse(reply.model_dump_json(), mandatory=False, content_type="application/json")

    @broker.subscriber(topology.scheduler_events, title="scheduler.events")
    async def on_event(body: dict[str, Any]) -> None:
        """Run lifecycle and catalog events the scheduler follows."""
        if body.get("type") == RunFinished.model_fields["type"].default:
            await service.run_finished(RunFinished.model_validate(body))
