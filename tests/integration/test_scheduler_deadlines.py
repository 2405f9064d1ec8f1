"""A command whose caller gave up is never carried out (issue 13, item 4), at the message level: the
scheduler in-process against the real broker and database, commands published directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.contracts import RunJob
from shared.contracts.runs import RequestCommand
from tests.integration.test_scheduler_groups import run_group, setup_group
from tests.integration.test_scheduler_runs import run_now
from tests.support.scheduler_harness import Harness
from tests.support.waiting import eventually


def due(command: RequestCommand, seconds: float) -> RequestCommand:
    return command.model_copy(update={"deadline": datetime.now(UTC) + timedelta(seconds=seconds)})


async def stale_request_ids(h: Harness) -> int:
    return int(await h.db["outbox"].count_documents({"request_id": {"$exists": True}}))


async def test_run_now_and_run_group_past_their_deadline_are_answered_expired_and_not_carried_out(
    scheduler: Harness,
) -> None:
    h = scheduler
    await setup_group(h, 61, (62,))
    for command in (due(run_now(60), -60), due(run_now(60), 0.2), due(run_group(61), -60)):
        reply = await h.request(command)  # 0.2 s ahead is inside the margin: the answer could come too late
        assert reply.expired and not reply.accepted and reply.run_id is None, command
        assert "deadline" in (reply.reason or "")
    assert await stale_request_ids(h) == 0

    # Nothing was allocated: the next requests get the first run numbers, and one run each is requested.
    fresh = await h.request(due(run_now(60), 20))
    assert fresh.accepted and fresh.run_id == "60.1"
    group = await h.request(due(run_group(61), 20))
    assert group.accepted and group.run_id == "61.1"
    await eventually(lambda: h.runs_of(60) and h.runs_of(62), what="the fresh runs requested", timeout=15)
    assert [m.data.run_id for m in h.runs_of(60)] == ["60.1"]
    assert [m.data.run_id for m in h.runs_of(62)] == ["62.1"]


async def test_an_expired_command_replayed_from_the_dead_letter_queue_is_not_carried_out(
    scheduler: Harness,
) -> None:
    """The broker dead-letters an expired command (reason `expired`) without its expiration: if someone
    moves it back, only its envelope deadline stops it."""
    h = scheduler
    stale = due(run_now(63), -120)
    assert isinstance(stale, RunJob)
    death = {"count": 1, "reason": "expired", "queue": h.topology.name("scheduler.commands")}
    await h.broker.publish(
        stale.model_dump_json(), exchange=h.topology.commands, routing_key=stale.routing_key, persist=True,
        message_id=stale.id, message_type=stale.type, content_type="application/json",
        headers={"x-death": [death], "x-first-death-reason": "expired"},
    )  # fmt: skip
    # Commands are consumed in order: once this one is answered, the replayed one was handled before it.
    fresh = await h.request(due(run_now(63), 20))
    assert fresh.accepted and fresh.run_id == "63.1"
    await eventually(lambda: h.runs_of(63), what="the fresh run requested", timeout=15)
    assert [m.data.run_id for m in h.runs_of(63)] == ["63.1"]
    assert await stale_request_ids(h) == 1  # the fresh one only
