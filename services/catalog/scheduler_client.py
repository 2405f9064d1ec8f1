"""Asking the scheduler for a run (request/reply) and reading its answer.

The caller waits a bounded time, so the command carries the instant it gives up (`deadline`) and
expires in the broker at that instant: a request the API answered 503 is never carried out later.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from services.catalog.errors import RunRefused
from services.catalog.ports import CommandBus
from shared.contracts import RunJobReply
from shared.contracts.runs import RequestCommand
from shared.errors import RetryableError

NOT_STARTED = "nothing was started, and the request will not be carried out later; try again"


def with_deadline(command: RequestCommand, timeout: float) -> RequestCommand:
    """The command stamped with the instant the caller stops waiting for its answer."""
    return command.model_copy(update={"deadline": datetime.now(UTC) + timedelta(seconds=timeout)})


async def request_run(bus: CommandBus, command: RequestCommand, timeout: float) -> str:
    """The new run id (`JobID.RunID` or `GroupID.RunID`), or RunRefused with the scheduler's reason.

    RetryableError (503) when the scheduler did not answer in time: then nothing was started.
    """
    try:
        answer = await bus.request(with_deadline(command, timeout), timeout=timeout)
    except RetryableError as exc:
        raise RetryableError(f"{exc.message}: {NOT_STARTED}") from exc
    try:
        reply = RunJobReply.model_validate(answer)
    except ValidationError as exc:
        raise RetryableError(f"the scheduler answered {command.type} with something unreadable") from exc
    if reply.expired:
        raise RetryableError(f"the scheduler received the request too late: {NOT_STARTED}")
    if not reply.accepted or reply.run_id is None:
        raise RunRefused(reply.reason or "the scheduler refused the run")
    return reply.run_id
