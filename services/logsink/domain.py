"""How each event changes the run records, group-run records and run logs: pure write plans.

A run record takes each event's change only in the state that change expects (its guard), and each
change makes its own guard false: `RunRequested` fills in a record not requested yet, `RunStarted` an
attempt later than the stored one of a run not terminal, `RunFinished` a record not terminal yet. So
an event applied once is refused when it comes again, in any order, without a record of applied event
ids; `RunProgress` replaces an older snapshot of a run not terminal. The changes one batch brings to
one run are folded into one statement; a record that refuses them together takes them one by one (a
late `RunStarted` still fills in who ran the run and when it started). Group-run changes are
order-tolerant by construction; log lines are stored once by (run, seq).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
Keyed = tuple[str, Update]  # an update and the kind of event it comes from (the metric label)

_TERMINAL = [status.value for status in TERMINAL_STATUSES]
NOT_TERMINAL = {"status": {"$nin": _TERMINAL}}
NOT_REQUESTED = {"requested_at": {"$exists": False}}
# The order a run's changes of one batch are folded in, whatever order they arrived in.
FOLD_ORDER = {
    RunRequested.routing_key: 0,
    RunStarted.routing_key: 1,
    RunProgress.routing_key: 2,
    RunFinished.routing_key: 3,
}


@dataclass(frozen=True)
class RunChange:
    """What one event changes in its run's record, and the state the record must be in (`guard`)."""

    run_id: str
    guard: dict[str, Any]
    sets: dict[str, Any]
    on_insert: dict[str, Any] = dataclass_field(default_factory=dict)
    minimum: dict[str, Any] = dataclass_field(default_factory=dict)
    upsert: bool = True
    # The change written on its own when the record refuses it together with others; empty: the
    # change as one statement.
    alone: tuple[Update, ...] = ()

    def statement(self) -> Update:
        update: dict[str, Any] = {"$set": self.sets}
        if self.on_insert:
            update["$setOnInsert"] = self.on_insert
        if self.minimum:
            update["$min"] = self.minimum
        return {"_id": self.run_id, **self.guard}, update, self.upsert

    def statements(self) -> tuple[Update, ...]:
        return self.alone or (self.statement(),)


@dataclass(frozen=True)
class Planned:
    """What one event writes. `kind` is the bounded metric label (the routing key)."""

    event_id: str
    kind: str
    run: RunChange | None = None
    group_runs: tuple[Update, ...] = ()
    log: dict[str, Any] | None = None
    # Lifecycle and group events: the same id twice in one batch is applied once.
    once_by_id: bool = True


@dataclass(frozen=True)
class RunWrites:
    """One run's changes of a batch: `together` in one statement (None when two events of one kind
    cannot be folded), and each on its own, with its kind, for a record that refuses them together."""

    run_id: str
    together: Update | None
    alone: tuple[Keyed, ...]


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
        return Planned(event.id, RunProgress.routing_key, run=on_progress(event), once_by_id=False)
    if isinstance(event, RunRequested):
        membership = on_member_requested(event)
        return Planned(
            event.id,
            RunRequested.routing_key,
            run=on_requested(event),
            group_runs=(membership,) if membership else (),
        )
    if isinstance(event, RunStarted):
        return Planned(event.id, RunStarted.routing_key, run=on_started(event))
    if isinstance(event, RunFinished):
        return Planned(event.id, RunFinished.routing_key, run=on_finished(event))
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


def on_requested(event: RunRequested) -> RunChange:
    """Fills in a record not requested yet; the status only on insert (a later event got further)."""
    data = event.data
    fields = job_fields(data.run_id, data.job.job_id, data.job.name, data.job.job_type.value, data.trigger)
    fields.update(
        requested_at=data.requested_at, requested_by=data.requested_by, run_number=_number(data.run_id)
    )
    if data.slot is not None:
        fields["slot"] = data.slot
    if data.group_run_id is not None:
        fields.update(group_run_id=data.group_run_id, group_id=data.group_id, group_name=data.group_name)
    return RunChange(data.run_id, NOT_REQUESTED, fields, on_insert={"status": RunStatus.QUEUED.value})


def on_started(event: RunStarted) -> RunChange:
    """A later attempt of a run not terminal: who runs it, running, the first start time.

    A record that refuses it (terminal, or at this attempt or a later one already) takes it as three
    writes in this order (the repository keeps the order): a later attempt still says who ran it,
    the first start time stays, and only a queued run becomes running.
    """
    data = event.data
    fields = job_fields(data.run_id, data.job_id, data.job_name, data.job_type.value, data.trigger)
    fields["run_number"] = _number(data.run_id)
    taken_by = {"executor": data.executor, "attempt": data.attempt}
    later_attempt = {"attempt": {"$not": {"$gte": data.attempt}}}
    first_start = {"started_at": data.started_at}
    running = RunStatus.RUNNING.value
    alone: tuple[Update, ...] = (
        (
            {"_id": data.run_id, **later_attempt},
            {"$set": {**fields, **taken_by}, "$setOnInsert": {"status": running}},
            True,
        ),
        ({"_id": data.run_id}, {"$min": first_start}, False),
        ({"_id": data.run_id, "status": RunStatus.QUEUED.value}, {"$set": {"status": running}}, False),
    )
    return RunChange(
        data.run_id,
        {**later_attempt, **NOT_TERMINAL},
        {**fields, **taken_by, "status": running},
        minimum=first_start,
        alone=alone,
    )


def on_progress(event: RunProgress) -> RunChange:
    """A run's latest progress, in its record: only a newer snapshot replaces it, and none once the run
    is terminal (readers show progress only while it is not). A snapshot never creates a record."""
    data = event.data
    snapshot = data.model_dump(mode="python", exclude={"run_id"})
    newer = {"progress.at": {"$not": {"$gte": data.at}}}
    return RunChange(data.run_id, {**NOT_TERMINAL, **newer}, {"progress": snapshot}, upsert=False)


def on_finished(event: RunFinished) -> RunChange:
    """The outcome of a record not terminal yet; a terminal record never changes again."""
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
    return RunChange(data.run_id, NOT_TERMINAL, finished, minimum={"started_at": data.started_at})


def fold(changes: Sequence[RunChange]) -> Update:
    """One statement with every change of one run (given in `FOLD_ORDER`, one of each kind): all their
    guards at once, later values winning, a status set on insert only if none is set."""
    guard: dict[str, Any] = {}
    sets: dict[str, Any] = {}
    on_insert: dict[str, Any] = {}
    minimum: dict[str, Any] = {}
    for change in changes:
        guard |= change.guard
        sets |= change.sets
        on_insert |= change.on_insert
        for name, value in change.minimum.items():
            minimum[name] = min(minimum.get(name, value), value)
    on_insert = {name: value for name, value in on_insert.items() if name not in sets}
    upsert = any(change.upsert for change in changes)
    return RunChange(changes[0].run_id, guard, sets, on_insert, minimum, upsert).statement()


def run_writes(batch: Sequence[Planned]) -> list[RunWrites]:
    """Each run's writes for the lifecycle events of a batch, in the order the runs first appear."""
    by_run: dict[str, list[tuple[str, RunChange]]] = {}
    for planned in batch:
        if planned.run is not None:
            by_run.setdefault(planned.run.run_id, []).append((planned.kind, planned.run))
    return [_writes_of_run(run_id, changes) for run_id, changes in by_run.items()]


def _writes_of_run(run_id: str, changes: list[tuple[str, RunChange]]) -> RunWrites:
    changes.sort(key=lambda kind_change: FOLD_ORDER[kind_change[0]])
    alone = tuple((kind, update) for kind, change in changes for update in change.statements())
    kinds = [kind for kind, _ in changes]
    if len(set(kinds)) < len(kinds):  # two starts (a take-over) or two ends: each against the other's result
        return RunWrites(run_id, None, alone)
    return RunWrites(run_id, fold([change for _, change in changes]), alone)


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


def fresh_events(batch: Sequence[Planned]) -> tuple[list[Planned], Counter[str]]:
    """The events of a batch worth writing, and the repeats dropped (by kind).

    A lifecycle or group event's id seen earlier in the batch is a repeat; a progress snapshot is not
    written when a newer one of its run is in the batch, nor when its run finishes in the batch (a
    terminal record shows no progress).
    """
    superseded = superseded_progress(batch)
    finishing = {p.run.run_id for p in batch if p.run is not None and p.kind == RunFinished.routing_key}
    seen: set[str] = set()
    fresh: list[Planned] = []
    repeats: Counter[str] = Counter()
    for index, planned in enumerate(batch):
        if planned.once_by_id and planned.event_id in seen:
            repeats[planned.kind] += 1
            continue
        seen.add(planned.event_id)
        change = planned.run
        ended = planned.kind == RunProgress.routing_key and change is not None and change.run_id in finishing
        if index in superseded or ended:
            continue
        fresh.append(planned)
    return fresh, repeats


def superseded_progress(batch: Sequence[Planned]) -> set[int]:
    """Indexes of the progress events of a batch that are superseded by a newer one of the same run."""
    newest: dict[str, tuple[datetime, int]] = {}
    superseded: set[int] = set()
    for index, planned in enumerate(batch):
        if planned.kind != RunProgress.routing_key or planned.run is None:
            continue
        run_id, at = planned.run.run_id, planned.run.sets["progress"]["at"]
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
