"""Deadlines of request/reply commands: the catalog stamps the instant it gives up, the scheduler's rule
for a command that arrives late, and the 503 that says nothing was started."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.catalog.errors import RunRefused
from services.catalog.scheduler_client import request_run
from services.scheduler.domain.deadlines import DEADLINE_MARGIN, expired_reply, past_deadline
from shared.contracts import Envelope, RunGroup, RunJob, RunJobReply
from shared.contracts.groups import RunGroupData
from shared.errors import RetryableError
from tests.integration.test_messaging import run_requested


def run_job(deadline: datetime | None = None) -> RunJob:
    job = run_requested().data.job
    return RunJob.model_validate(
        {"source": "test", "deadline": deadline, "data": {"job": job.model_dump(), "requested_by": "t"}}
    )


class Bus:
    """Answers every request with `answer` (or raises it), and keeps what it was asked."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[tuple[Envelope, float]] = []

    async def publish(self, message: Envelope) -> None:
        raise AssertionError("run requests are request/reply")

    async def request(self, message: Envelope, *, timeout: float) -> Any:
        self.asked.append((message, timeout))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_the_command_carries_the_instant_the_caller_gives_up() -> None:
    bus = Bus(RunJobReply(accepted=True, run_id="7.1").model_dump())
    before = datetime.now(UTC)
    assert await request_run(bus, run_job(), timeout=10) == "7.1"
    ((sent, timeout),) = bus.asked
    assert isinstance(sent, RunJob) and sent.deadline is not None and timeout == 10
    assert before + timedelta(seconds=10) <= sent.deadline <= datetime.now(UTC) + timedelta(seconds=10)
    group = RunGroup(source="test", data=RunGroupData(group_id=3, requested_by="t"))
    await request_run(Bus(RunJobReply(accepted=True, run_id="3.1").model_dump()), group, timeout=4)


@pytest.mark.parametrize(
    "answer",
    [
        RetryableError("no answer to connect.run.job.v1 within 10s"),
        RunJobReply(accepted=False, expired=True, reason="late").model_dump(),
    ],
)
async def test_no_answer_in_time_or_too_late_is_a_503_that_says_nothing_was_started(answer: Any) -> None:
    with pytest.raises(RetryableError) as raised:
        await request_run(Bus(answer), run_job(), timeout=10)
    assert "nothing was started" in raised.value.message


async def test_a_refusal_stays_a_refusal() -> None:
    with pytest.raises(RunRefused, match="running"):
        await request_run(
            Bus(RunJobReply(accepted=False, reason="job 7 is running").model_dump()), run_job(), 10
        )


def test_a_command_is_carried_out_only_while_its_answer_can_still_reach_the_caller() -> None:
    now = datetime.now(UTC)
    assert not past_deadline(run_job(), now)  # no deadline (an older catalog): as before
    assert not past_deadline(run_job(now + DEADLINE_MARGIN + timedelta(seconds=1)), now)
    assert not past_deadline(run_job(now + DEADLINE_MARGIN), now)
    assert past_deadline(run_job(now + DEADLINE_MARGIN - timedelta(milliseconds=1)), now)
    assert past_deadline(run_job(now - timedelta(hours=1)), now)
    # The caller's clock 0.5 s ahead of ours: a command sent with 5 s to wait is still carried out.
    assert not past_deadline(run_job(now + timedelta(seconds=5.5)), now + timedelta(seconds=0.5))


def test_the_expired_answer_names_the_deadline() -> None:
    at = datetime(2026, 12, 1, 22, 0, 5, tzinfo=UTC)
    reply = expired_reply(run_job(at))
    assert reply.expired and not reply.accepted and reply.run_id is None
    assert "2026-12-01T22:00:05+00:00" in (reply.reason or "")


def test_a_deadline_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        run_job(datetime(2026, 12, 1, 22, 0, 5))
