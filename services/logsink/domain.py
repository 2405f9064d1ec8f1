"""How each event changes the run records, group-run records and run logs: pure write plans.

Order-tolerant and idempotent by construction: a terminal record's status and results never change
again (a late `RunStarted` only fills in who ran it and when it started; progress is kept apart and
shown only while a run is not terminal), and `RunRequested` only fills in what is missing. On top of
that, lifecycle and group events are applied once by event id (the repository remembers applied ids),
log lines once by (run, seq).
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from services.logsink.errors import UnknownEvent
from shared.contracts import (
    GroupRunFinished,
    GroupRunStarted,
    RunFinished,
    RunLog,
    RunProgress,
    RunRequested,
    RunStarted,
)
from shared.contracts.runs import TERMINAL_STATUSES, RunStatus

Update = tuple[dict[str, Any], dict[str, Any], bool]  # filter, update, upsert

_TERMINAL = [status.value for status in TERMINAL_STATUSES]
NOT_TERMINAL = {"status": {"$nin": _TERMINAL}}


@dataclass(frozen=True)
class Planned:
    """What one event writes. `kind` is the bounded metric label (the routing key)."""

    event_id: str
    kind: str
    runs: tuple[Update, ...] = ()
    group_runs: tuple[Update, ...] = ()
    log: dict[str, Any] | None = None
    # Lifecycle and group events are remembered by id, so a redelivery is not applied again.
    once_by_id: bool = True
    # A progress snapshot (`_id` is the run id): only the newest one per run in a batch is written.
    progress: dict[str, Any] | None = dataclass_field(default=None)


RecordedEvent = Annotated[
    RunRequested | RunStarted | RunProgress | RunLog | RunFinished | GroupRunStarted | GroupRunFinished,
    Field(discriminator="type"),
]
# One pass of pydantic (in Rust) from the message bytes to the typed event, chosen by its `type`.
_EVENTS: TypeAdapter[RecordedEvent] = TypeAdapter(RecordedEvent)
_UNKNOWN_TYPE = ("union_tag_invalid", "union_tag_not_found")


def plan(body: dict[str, Any]) -> Planned:
    """The writes of one decoded message; raises `UnknownEvent` or pydantic's `ValidationError`."""
    try:
        event = _EVENTS.validate_python(body)
    except ValidationError as exc:
        raise _unknown(exc) or exc from None
    return plan_event(event)


def plan_json(raw: bytes | str) -> Planned:
    """The writes of one message as it arrives (JSON bytes), decoded without an intermediate dict."""
    try:
        event = _EVENTS.validate_json(raw)
    except ValidationError as exc:
        raise _unknown(exc) or exc from None
    return plan_event(event)


def plan_event(event: RecordedEvent) -> Planned:
    if isinstance(event, RunLog):
        return Planned(event.id, RunLog.routing_key, log=log_line(event), once_by_id=False)
    if isinstance(event, RunProgress):
        return Planned(event.id, RunProgress.routing_key, once_by_id=False, progress=progress_snapshot(event))
    if isinstance(event, RunRequested):
        membership = on_member_requested(event)
        return Planned(
            event.id,
            RunRequested.routing_key,
            runs=(on_requested(event),),
            group_runs=(membership,) if membership else (),
        )
    if isinstance(event, RunStarted):
        return Planned(event.id, RunStarted.routing_key, runs=tuple(on_started(event)))
    if isinstance(event, RunFinished):
        return Planned(event.id, RunFinished.routing_key, runs=(on_finished(event),))
    if isinstance(event, GroupRunStarted):
        return Planned(event.id, GroupRunStarted.routing_key, group_runs=(on_group_started(event),))
    return Planned(event.id, GroupRunFinished.routing_key, group_runs=(on_group_finished(event),))


def _unknown(exc: ValidationError) -> UnknownEvent | None:
    """An event of a type the logsink does not record, told apart from a malformed one."""
    for error in exc.errors(include_url=False):
        if error["type"] in _UNKNOWN_TYPE and not error["loc"]:
            tag = (error.get("ctx") or {}).get("tag")
            return UnknownEvent(f"logsink does not record events of type {tag!r}")
    return None


# --- run records -----------------------------------------------------------------------------------


def job_fields(run_id: str, job_id: int, name: str, job_type: str, trigger: str) -> dict[str, Any]:
    return {"run_id": run_id, "job_id": job_id, "job_name": name, "job_type": job_type, "trigger": trigger}


def on_requested(event: RunRequested) -> Update:
    data = event.data
    fields = job_fields(data.run_id, data.job.job_id, data.job.name, data.job.job_type.value, data.trigger)
    fields.update(
        requested_at=data.requested_at, requested_by=data.requested_by, run_number=_number(data.run_id)
    )
    if data.slot is not None:
        fields["slot"] = data.slot
    if data.group_run_id is not None:
        fields.update(group_run_id=data.group_run_id, group_id=data.group_id, group_name=data.group_name)
    return {"_id": data.run_id}, {"$setOnInsert": {"status": RunStatus.QUEUED.value}, "$set": fields}, True


def on_started(event: RunStarted) -> list[Update]:
    """Three writes that must be applied in this order (the repository keeps the order)."""
    data = event.data
    fields = job_fields(data.run_id, data.job_id, data.job_name, data.job_type.value, data.trigger)
    fields["run_number"] = _number(data.run_id)
    taken_by = {"executor": data.executor, "attempt": data.attempt}
    return [
        # Who runs it: only a later attempt (a take-over) replaces an earlier one's executor.
        (
            {"_id": data.run_id, "attempt": {"$not": {"$gte": data.attempt}}},
            {"$set": {**fields, **taken_by}, "$setOnInsert": {"status": RunStatus.RUNNING.value}},
            True,
        ),
        # The first start time stays.
        ({"_id": data.run_id}, {"$min": {"started_at": data.started_at}}, False),
        # Queued becomes running; a terminal status never goes back.
        (
            {"_id": data.run_id, "status": RunStatus.QUEUED.value},
            {"$set": {"status": RunStatus.RUNNING.value}},
            False,
        ),
    ]


def progress_snapshot(event: RunProgress) -> dict[str, Any]:
    """A run's latest progress, kept beside its record: one small document per run, replaced by a
    newer snapshot. Rewriting the run record (and its indexes) for every snapshot cost the database
    several times more; readers show progress only while the run is not terminal."""
    data = event.data
    return {"_id": data.run_id, **data.model_dump(mode="python", exclude={"run_id"})}


def newer_than_stored(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The filter a snapshot replaces the stored one with: only an older one (an upsert that finds a
    newer or the same snapshot hits the duplicate `_id`, which is skipped)."""
    return {"_id": snapshot["_id"], "at": {"$lt": snapshot["at"]}}


def on_finished(event: RunFinished) -> Update:
    data = event.data
    duration = max((data.finished_at - data.started_at).total_seconds(), 0.0)
    finished = {
        "run_id": data.run_id,
        "job_id": data.job_id,
        "run_number": _number(data.run_id),
        "status": data.status.value,
        "counts": data.counts.model_dump(),
        "finished_at": data.finished_at,
        "duration_seconds": duration,
        "error": data.error,
        "rejects_file": data.rejects_file,
        "last_log_seq": data.last_log_seq,
        "finished_event_id": event.id,
    }
    return (
        {"_id": data.run_id, **NOT_TERMINAL},
        {"$set": finished, "$min": {"started_at": data.started_at}},
        True,
    )


# --- group-run records -----------------------------------------------------------------------------


def on_member_requested(event: RunRequested) -> Update | None:
    """A member run of a group run joins the group-run record (members are ordered when read)."""
    data = event.data
    if data.group_run_id is None:
        return None
    member = {"run_id": data.run_id, "job_id": data.job.job_id, "requested_at": data.requested_at}
    fields: dict[str, Any] = {"group_run_id": data.group_run_id, "run_number": _number(data.group_run_id)}
    if data.group_id is not None:
        fields["group_id"] = data.group_id
    if data.group_name is not None:
        fields["group_name"] = data.group_name
    return (
        {"_id": data.group_run_id},
        {
            "$set": fields,
            "$addToSet": {"members": member},
            "$setOnInsert": {"status": RunStatus.RUNNING.value},
        },
        True,
    )


def on_group_started(event: GroupRunStarted) -> Update:
    data = event.data
    fields = {
        "group_run_id": data.group_run_id,
        "run_number": _number(data.group_run_id),
        "group_id": data.group_id,
        "group_name": data.group_name,
        "job_ids": list(data.job_ids),
        "trigger": data.trigger.value,
    }
    return (
        {"_id": data.group_run_id},
        {
            "$set": fields,
            "$min": {"started_at": data.started_at},
            "$setOnInsert": {"status": RunStatus.RUNNING.value},
        },
        True,
    )


def on_group_finished(event: GroupRunFinished) -> Update:
    data = event.data
    finished = {
        "group_run_id": data.group_run_id,
        "run_number": _number(data.group_run_id),
        "group_id": data.group_id,
        "status": data.status.value,
        "member_run_ids": list(data.member_run_ids),
        "finished_at": data.finished_at,
        "error": data.error,
        "finished_event_id": event.id,
    }
    return ({"_id": data.group_run_id, **NOT_TERMINAL}, {"$set": finished}, True)


# --- run logs --------------------------------------------------------------------------------------


def log_line(event: RunLog) -> dict[str, Any]:
    """A line as stored (in its run's chunk; see `shared.runlogs`); a redelivery is stored once."""
    data = event.data
    return {
        "run_id": data.run_id,
        "seq": data.seq,
        "level": data.level.value,
        "message": data.message,
        "fields": data.fields,
        "at": data.at,
    }


def superseded_progress(batch: list[Planned]) -> set[int]:
    """Indexes of the progress events of a batch that are superseded by a newer one of the same run."""
    newest: dict[str, tuple[datetime, int]] = {}
    superseded: set[int] = set()
    for index, planned in enumerate(batch):
        if planned.progress is None:
            continue
        run_id, at = planned.progress["_id"], planned.progress["at"]
        current = newest.get(run_id)
        if current is None or at >= current[0]:
            if current is not None:
                superseded.add(current[1])
            newest[run_id] = (at, index)
        else:
            superseded.add(index)
    return superseded


def _number(run_id: str) -> int:
    return int(run_id.split(".", 1)[1])
