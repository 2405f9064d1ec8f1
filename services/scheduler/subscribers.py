"""Thin consumers: decode, call the service, answer."""

from __future__ import annotations

import json
from typing import Any

from faststream.rabbit import RabbitResponse
from faststream.rabbit.message import RabbitMessage

from services.scheduler.service import SchedulerService
from shared.contracts import (
    Envelope,
    GroupChanged,
    GroupDeleted,
    JobChanged,
    JobDeleted,
    RunFinished,
    RunGroup,
    RunJob,
    RunJobReply,
    StopGroupRun,
    TriggerFired,
)
from shared.errors import PermanentError
from shared.runtime import ServiceRuntime


def message_type(message: RabbitMessage) -> str | None:
    """The envelope type: the AMQP `type` property, else the body's `type` field."""
    kind = getattr(message.raw_message, "type", None)
    if kind:
        return str(kind)
    try:
        body = json.loads(message.body)
    except ValueError:
        return None
    return body.get("type") if isinstance(body, dict) else None


def of(*types: type[Envelope]) -> Any:
    names = {t.model_fields["type"].default for t in types}

    async def accept(message: RabbitMessage) -> bool:
        return not message.processed and message_type(message) in names

    return accept


def reply(answer: RunJobReply) -> RabbitResponse:
    # Not mandatory: RabbitMQ reports publishes to the direct reply-to pseudo-queue as unroutable
    # even when it delivers them.
    return RabbitResponse(answer.model_dump_json(), mandatory=False, content_type="application/json")


def register_subscribers(runtime: ServiceRuntime, service: SchedulerService) -> None:
    broker, topology = runtime.broker, runtime.topology

    commands = broker.subscriber(topology.scheduler_commands, title="scheduler.commands")

    @commands(filter=of(RunJob))
    async def on_run_job(command: RunJob) -> RabbitResponse:
        """Run now (request/reply): the reply (`RunJobReply`) carries the new `JobID.RunID` or the refusal."""
        return reply(await service.run_now(command))

    @commands(filter=of(RunGroup))
    async def on_run_group(command: RunGroup) -> RabbitResponse:
        """Run a group now (request/reply): the reply (`RunJobReply`) carries `GroupID.RunID` or the refusal."""
        return reply(await service.run_group(command))

    @commands(filter=of(StopGroupRun))
    async def on_stop_group_run(command: StopGroupRun) -> RabbitResponse:
        """Stop a group run: its current member is stopped and no further member is requested."""
        return reply(await service.stop_group_run(command))

    @commands
    async def on_unknown_command(body: dict[str, Any]) -> None:
        """A command of a type the scheduler does not know goes to the dead-letter queue."""
        raise PermanentError(f"unknown command type {body.get('type')!r}")

    events = broker.subscriber(topology.scheduler_events, title="scheduler.events")

    @events(filter=of(RunFinished))
    async def on_run_finished(event: RunFinished) -> None:
        """Frees the job for its next slot and advances its group run."""
        await service.run_finished(event)

    @events(filter=of(JobChanged))
    async def on_job_changed(event: JobChanged) -> None:
        """Follows the job's schedule, activity, expiration and snapshot."""
        await service.job_changed(event)

    @events(filter=of(JobDeleted))
    async def on_job_deleted(event: JobDeleted) -> None:
        await service.job_deleted(event)

    @events(filter=of(GroupChanged))
    async def on_group_changed(event: GroupChanged) -> None:
        """Follows the group's members, schedule, activity and expiration."""
        await service.group_changed(event)

    @events(filter=of(GroupDeleted))
    async def on_group_deleted(event: GroupDeleted) -> None:
        await service.group_deleted(event)

    @events
    async def on_other_event(body: dict[str, Any]) -> None:
        """Other catalog events are of no interest to the scheduler."""

    @broker.subscriber(topology.scheduler_triggers, title="scheduler.triggers")
    async def on_trigger(event: TriggerFired) -> None:
        """Public trigger events (routing key = trigger name): subscribed on-event jobs and groups run
        once per distinct idempotency key."""
        await service.trigger_fired(event)
