"""Group runs in MongoDB (`group_runs`): started, advanced on each member's end, stopped.

All state lives in the database and every step commits with its outbox entry, so a scheduler that
restarts in the middle of a group run carries on from the next `RunFinished`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from services.scheduler.domain import (
    GroupStep,
    Outcome,
    SlotPlan,
    StepResult,
    after_member_finished,
    build_group_finished,
    build_group_started,
    decide,
    member_run_requested,
    owner_key,
    unrecorded,
)
from services.scheduler.domain.groups import member_refused
from services.scheduler.domain.runs import SOURCE, next_run_id
from services.scheduler.errors import CommandExpired, GroupRefused
from services.scheduler.store.base import SchedulerDb
from services.scheduler.store.documents import Doc, ScheduleDoc, display_next_run, epoch_seconds
from services.scheduler.store.fires import FireResult, ledger_entry, missed_entries, recorded
from shared.contracts import Envelope, GroupRunStarted, StopRun
from shared.contracts.jobs import is_expired
from shared.contracts.runs import RunStatus, StopRunData, Trigger

Planner = Callable[[ScheduleDoc], SlotPlan]


class GroupStore:
    def __init__(self, db: SchedulerDb) -> None:
        self.db = db
        self.schedules = db.schedules
        self.group_runs = db.group_runs
        self.ledger = db.ledger
        self.outbox = db.outbox

    async def run_group(
        self, *, request_id: str, group_id: int, requested_by: str, trigger: Trigger, now: datetime,
        wall: datetime, still_wanted: Callable[[], bool] = lambda: True,
    ) -> tuple[str, str | None, list[Envelope]]:  # fmt: skip
        """RunGroup: start a group run now (idempotent per command); raises GroupRefused, or
        CommandExpired when `still_wanted()` turns false before the commit (the caller gave up)."""

        async def work(session: AsyncClientSession) -> tuple[str, str | None, list[Envelope]]:
            earlier = await self.outbox.find_request(request_id, session)
            if earlier is not None:
                started = earlier.messages[0]
                assert isinstance(started, GroupRunStarted)
                return started.data.group_run_id, earlier.id, []
            raw = await self.schedules.find_one({"_id": owner_key("group", group_id)}, session=session)
            doc = ScheduleDoc(raw) if raw and raw.get("known") and not raw.get("deleted") else None
            if doc is None:
                raise GroupRefused(f"group {group_id} is not known to the scheduler")
            if doc.running:
                raise GroupRefused(f"group {group_id} is running (run {doc.running})")
            if is_expired(doc.expires_at, now):
                raise GroupRefused(f"group {group_id} has expired")
            group_run_id, messages = await self.start_group_run(
                session, doc, trigger=trigger, requested_by=requested_by, now=now
            )
            assert group_run_id is not None
            if not still_wanted():
                raise CommandExpired(f"the request to run group {group_id} passed its deadline")
            entry = await self.outbox.add(session, messages, now=wall, request_id=request_id)
            return group_run_id, entry, messages

        return await self.db.transaction(work)

    async def start_group_run(
        self, session: AsyncClientSession, doc: ScheduleDoc, *, trigger: Trigger, requested_by: str,
        now: datetime, slot: datetime | None = None, params: dict[str, str] | None = None,
        fire_at: datetime | None = None,
    ) -> tuple[str | None, list[Envelope]]:  # fmt: skip
        rid = next_run_id(doc.owner_id, doc.last_run)
        grun: Doc = {
            "_id": str(rid),
            "group_id": doc.owner_id,
            "group_name": doc.name,
            "job_ids": list(doc.job_ids),
            "continue_on_failure": doc.continue_on_failure,
            "trigger": trigger.value,
            "requested_by": requested_by,
            "params": dict(params or {}),
            "slot": slot,
            "fire_at": fire_at or slot,
            "status": RunStatus.RUNNING.value,
            "step": 0,
            "current_run_id": None,
            "member_run_ids": [],
            "failures": [],
            "stop_requested": False,
            "started_at": now,
        }
        messages: list[Envelope] = [
            build_group_started(str(rid), doc.owner_id, doc.name, doc.job_ids, trigger, now)
        ]
        if doc.job_ids:
            messages += await self._request_step(session, grun, 0, now)
        else:
            messages += self._finish(grun, StepResult(None, RunStatus.SUCCEEDED), now)
        running = str(rid) if grun["status"] == RunStatus.RUNNING.value else None
        await self.schedules.update_one(
            {"_id": doc.id}, {"$set": {"running": running, "last_run": rid.number}}, session=session
        )
        await self.group_runs.insert_one(grun, session=session)
        return str(rid), messages

    async def _request_step(
        self, session: AsyncClientSession, grun: Doc, step: int, now: datetime
    ) -> list[Envelope]:
        """Request member `step`; a member that cannot run counts as a failed step."""
        while True:
            job_id = int(grun["job_ids"][step])
            raw = await self.schedules.find_one({"_id": owner_key("job", job_id)}, session=session)
            member = ScheduleDoc(raw) if raw and not raw.get("deleted") else None
            snapshot = member.snapshot if member else None
            reason = None
            if member is None or snapshot is None:
                reason = "unknown to the scheduler"
            elif member.running:
                reason = f"running (run {member.running})"
            if reason is None and member is not None and snapshot is not None:
                rid = next_run_id(job_id, member.last_run)
                await self.schedules.update_one(
                    {"_id": member.id},
                    {"$set": {"running": str(rid), "last_run": rid.number, "group_run": grun["_id"]}},
                    session=session,
                )  # fmt: skip
                grun |= {"step": step, "current_run_id": str(rid)}
                grun["member_run_ids"] = [*grun["member_run_ids"], str(rid)]
                return [
                    member_run_requested(
                        snapshot, rid, now, group_run_id=grun["_id"], group_id=grun["group_id"],
                        group_name=grun["group_name"], requested_by=grun["requested_by"],
                        slot=grun.get("slot"), params=grun.get("params"), fire_at=grun.get("fire_at"),
                    )
                ]  # fmt: skip
            decision = member_refused(_state(grun, step), job_id, reason or "refused")
            grun["failures"] = list(decision.failures)
            if decision.next_step is None:
                return self._finish(grun, decision, now)
            step = decision.next_step

    def _finish(self, grun: Doc, decision: StepResult, now: datetime) -> list[Envelope]:
        status = decision.status or RunStatus.FAILED
        grun |= {
            "status": status.value, "current_run_id": None, "finished_at": now, "error": decision.error,
            "failures": list(decision.failures),
        }  # fmt: skip
        return [
            build_group_finished(
                grun["_id"], grun["group_id"], status, tuple(grun["member_run_ids"]), now, decision.error
            )
        ]

    async def advance_group(
        self, session: AsyncClientSession, run_id: str, status: RunStatus, now: datetime
    ) -> list[Envelope]:
        """After a member's `RunFinished`: request the next member or end the group run."""
        grun = await self.group_runs.find_one(
            {"current_run_id": run_id, "status": RunStatus.RUNNING.value}, session=session
        )
        if grun is None:
            return []  # not a group member, or this RunFinished was handled already
        decision = after_member_finished(_state(grun, int(grun["step"])), run_id, status)
        grun["failures"] = list(decision.failures)
        if decision.next_step is not None and not grun.get("stop_requested"):
            messages = await self._request_step(session, grun, decision.next_step, now)
        else:
            messages = self._finish(grun, decision, now)
        await self._save(session, grun, run_id)
        return messages

    async def _save(self, session: AsyncClientSession, grun: Doc, previous_run_id: str | None) -> None:
        await self.group_runs.replace_one(
            {"_id": grun["_id"], "current_run_id": previous_run_id}, grun, session=session
        )
        if grun["status"] != RunStatus.RUNNING.value:
            await self.schedules.update_one(
                {"_id": owner_key("group", grun["group_id"]), "running": grun["_id"]},
                {"$set": {"running": None}},
                session=session,
            )

    async def stop_group_run(
        self, group_run_id: str, requested_by: str, now: datetime, wall: datetime
    ) -> FireResult:
        """Stop the current member (StopRun) and request no further ones; raises GroupRefused."""

        async def work(session: AsyncClientSession) -> FireResult:
            grun = await self.group_runs.find_one({"_id": group_run_id}, session=session)
            if grun is None:
                raise GroupRefused(f"group run {group_run_id} does not exist")
            if grun["status"] != RunStatus.RUNNING.value:
                raise GroupRefused(f"group run {group_run_id} is not running ({grun['status']})")
            current = grun.get("current_run_id")
            messages: list[Envelope] = []
            if current:
                grun["stop_requested"] = True
                stop = StopRun(
                    id=f"stop-{current}-{group_run_id}", source=SOURCE, subject=current, time=now,
                    data=StopRunData(run_id=current, requested_by=requested_by),
                )  # fmt: skip
                messages.append(stop)
            else:
                messages += self._finish(grun, StepResult(None, RunStatus.STOPPED, (), "stopped"), now)
            await self._save(session, grun, current)
            return FireResult(messages=messages, outbox_id=await self.outbox.add(session, messages, now=wall))

        return await self.db.transaction(work)

    async def fire_group(self, key: str, planner: Planner, now: datetime, wall: datetime) -> FireResult:
        """A group schedule's due slots: start a group run (or skip) for each, in one transaction."""

        async def work(session: AsyncClientSession) -> FireResult:
            result = FireResult()
            raw = await self.schedules.find_one({"_id": key}, session=session)
            if raw is None or raw.get("next_slot") is None or raw["next_slot"] > now:
                return result
            doc = ScheduleDoc(raw)
            plan = planner(doc)
            if not plan.all_due:  # reached its slot but not its spread fire time yet
                return result
            running, previous = doc.running, raw.get("previous_run")
            fresh = unrecorded(plan.all_due, await recorded(self.ledger, session, key, plan.all_due))
            missed = [s for s in plan.missed if s in fresh]
            if missed:  # one entry for the whole skipped range
                await self.ledger.insert_many(missed_entries(key, missed, wall), session=session)
                result.outcomes += [(key, s, Outcome.MISSED) for s in missed]
            for slot in (s for s in plan.candidates if s in fresh):
                run_id = None
                outcome = decide(slot, active=doc.active, expires_at=doc.expires_at, running=bool(running))
                if outcome is Outcome.REQUESTED:
                    run_id, messages = await self.start_group_run(
                        session, doc, trigger=Trigger.SCHEDULED, requested_by="scheduler", now=now, slot=slot,
                        fire_at=plan.fire_time(slot),
                    )  # fmt: skip
                    result.messages += messages
                    running, previous = run_id, slot
                await self.ledger.insert_one(ledger_entry(key, slot, outcome, wall, run_id), session=session)
                result.outcomes.append((key, slot, outcome))
            changes: dict[str, Any] = {
                "next_slot": plan.next_slot, "due": epoch_seconds(plan.next_due), "previous_run": previous,
                "next_run": display_next_run(doc.schedule, plan.next_due, doc.active),
            }  # fmt: skip
            await self.schedules.update_one({"_id": key}, {"$set": changes}, session=session)
            result.outbox_id = await self.outbox.add(session, result.messages, now=wall)
            return result

        return await self.db.transaction(work)

    async def group_run(self, group_run_id: str) -> Doc | None:
        return await self.group_runs.find_one({"_id": group_run_id})


def _state(grun: Doc, step: int) -> GroupStep:
    return GroupStep(
        job_ids=tuple(int(j) for j in grun["job_ids"]),
        step=step,
        continue_on_failure=bool(grun["continue_on_failure"]),
        stop_requested=bool(grun.get("stop_requested")),
        failures=tuple(grun.get("failures") or ()),
    )
