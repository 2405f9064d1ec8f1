"""A burst of concurrent run-now commands through the broker (issue #14): each is answered, with its own
run, and each run is requested exactly once. The commands that wait for an allocation in progress are
allocated together (one transaction); the figures are bench/run_now.py's, not asserted here."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from tests.integration.test_scheduler_runs import run_now
from tests.support.scheduler_harness import Harness
from tests.support.waiting import eventually

JOBS = range(300, 400)


async def test_a_hundred_concurrent_run_now_commands_are_each_answered_with_one_run(
    scheduler: Harness,
) -> None:
    h = scheduler
    commands = [run_now(job) for job in JOBS] + [run_now(300)]  # the last overlaps job 300's run
    started = time.perf_counter()
    replies = await asyncio.gather(*(h.request(c) for c in commands))
    print(f"\n{len(commands)} concurrent run-now answered in {time.perf_counter() - started:.2f} s")
    assert [r.run_id for r in replies[:-1]] == [f"{job}.1" for job in JOBS]
    assert not replies[-1].accepted and "running" in (replies[-1].reason or "")
    await eventually(lambda: len(h.requested) >= len(JOBS), what="every run requested", timeout=30)
    await h.service.settle()
    assert Counter(m.data.run_id for m in h.requested) == Counter(f"{job}.1" for job in JOBS)
    assert await h.db["outbox"].count_documents({"published": False}) == 0
    # Redelivered, the same commands get the same runs and allocate nothing more.
    again = await asyncio.gather(*(h.request(c) for c in commands[:10]))
    assert [r.run_id for r in again] == [f"{job}.1" for job in JOBS[:10]]
    assert await h.db["outbox"].count_documents({"request_id": {"$exists": True}}) == len(JOBS)
