"""Use case of an `Idempotency-Key` (issue #19): claim the key before the request runs, keep its answer after.

`begin` either claims the key (an `Attempt`: run the request, then `finish` it with its answer) or gives the
first attempt's `Answer` to replay; a refusal (another request under the key, the first still running or
its outcome unknown) is raised. The rules are `domain.idempotency`'s; the records `ports.IdempotencyRecords`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.catalog.domain.idempotency import Answer, Attempt, answer_of, is_expired, keeps_answer
from services.catalog.ports import IdempotencyRecords
from shared.errors import RetryableError

RECLAIM_TRIES = 3


def _now() -> datetime:
    # Milliseconds, as the database keeps dates: the claim's time is compared with the stored one.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class IdempotentRequests:
    def __init__(self, records: IdempotencyRecords, clock: Callable[[], datetime] = _now) -> None:
        self.records = records
        self.clock = clock

    async def begin(self, caller: str, key: str, fingerprint: str) -> Attempt | Answer:
        """A claimed attempt to run, or the answer to give again; raises the refusals."""
        now = self.clock()
        attempt = Attempt(caller, key, fingerprint, now)
        for _ in range(RECLAIM_TRIES):
            kept = await self.records.claim(attempt)
            if kept is None:
                return attempt
            if not is_expired(kept, now):
                return answer_of(kept, fingerprint, now)
            if await self.records.reclaim(kept, attempt):
                return attempt
        raise RetryableError("the idempotency key was claimed by concurrent requests meanwhile; retry")

    async def finish(self, attempt: Attempt, answer: Answer) -> None:
        """Keep a final answer (2xx, 4xx) for the key; release it after a passing failure (5xx, 429)."""
        if keeps_answer(answer.status):
            await self.records.complete(attempt, answer)
        else:
            await self.records.release(attempt)

    async def abandon(self, attempt: Attempt) -> None:
        """The request failed without an answer (an unexpected error): a retry may run."""
        await self.records.release(attempt)
