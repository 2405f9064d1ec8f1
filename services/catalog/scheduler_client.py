"""Asking the scheduler for a run (request/reply) and reading its answer."""

from __future__ import annotations

from pydantic import ValidationError

from services.catalog.errors import RunRefused
from services.catalog.ports import CommandBus
from shared.contracts import Envelope, RunJobReply
from shared.errors import RetryableError


async def request_run(bus: CommandBus, command: Envelope, timeout: float) -> str:
    """The new run id (`JobID.RunID` or `GroupID.RunID`), or RunRefused with the scheduler's reason."""
    answer = await bus.request(command, timeout=timeout)
    try:
        reply = RunJobReply.model_validate(answer)
    except ValidationError as exc:
        raise RetryableError(f"the scheduler answered {command.type} with something unreadable") from exc
    if not reply.accepted or reply.run_id is None:
        raise RunRefused(reply.reason or "the scheduler refused the run")
    return reply.run_id
