"""Commands whose caller gave up are not carried out (DESIGN §3).

A request/reply command (`RunJob`, `RunGroup`) carries `deadline`: the instant, on the caller's clock,
at which the caller stops waiting and answers 503 "nothing was started". The scheduler carries a command
out only while `now + DEADLINE_MARGIN <= deadline` on its own clock. The margin covers a small difference
between the two hosts' clocks and the time to allocate the run and answer, so whatever the scheduler
does, the caller is still waiting for the answer. The broker enforces the same deadline on its own
(message expiration = the caller's wait); this rule also holds when an expired command is replayed from
the dead-letter queue, or the broker held it past its expiry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.contracts import RunJobReply
from shared.contracts.runs import RequestCommand

DEADLINE_MARGIN = timedelta(seconds=1)


def past_deadline(command: RequestCommand, now: datetime) -> bool:
    """True when the caller has given up, or would before our answer reached it. No deadline: never."""
    return command.deadline is not None and now + DEADLINE_MARGIN > command.deadline


def expired_reply(command: RequestCommand) -> RunJobReply:
    deadline = command.deadline.isoformat(timespec="seconds") if command.deadline else "(none)"
    return RunJobReply(
        accepted=False,
        expired=True,
        reason=f"the request arrived after its deadline {deadline}; it was not carried out",
    )
