"""How each event changes the run records, group-run records and run logs: pure write plans.

A run record takes each event's change only in the state that change expects (its guard), and each
change makes its own guard false: `RunRequested` fills in a record not requested yet, `RunStarted` an
attempt later than the stored one of a run not terminal, `RunFinished` a record not terminal yet. So
an event applied once is refused when it comes again, in any order, without a record of applied event
ids; `RunProgress` replaces an older snapshot of a run not terminal. The changes one batch brings to
one run are folded into one statement; a record that refuses them together takes them one by one (a
late `RunStarted` still fills in who ran the run and when it started). Group-run changes are
order-tolerant by construction; log lines are stored once by (run, seq).

The records' fields are named by `shared.run_records`, which the catalog reads them with.
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
from shared.contracts.runs import RunStatus
from shared.run_records import (
    TERMINAL,
    GroupRunField,
    MemberField,
    RunField,
    duration_seconds,
    progress_snapshot,
    run_number,
)

Update = tuple[dict[str, Any], dict[str, Any], bool]  # filter, update, upsert
Keyed = tuple[str, Update]  # an update and the kind of event it comes from (the metric label)

NOT_ENDED = {"$nin": list(TERMINAL)}  # a status not terminal (or none yet)
NOT_TERMINAL = {RunField.STATUS: NOT_ENDED}
NOT_REQUESTED = {RunField.REQUESTED_AT: {"$exists": False}}
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
        return {RunField.ID: self.run_id, **self.guard}, update, self.upsert

    def statements(self) -> tuple[Update, ...]:
        return self.alone or (self.statement(),)


@dataclass(frozen=True)
class Ended:
    """A run's or group run's final outcome, as its event tells it: what notifications are made from."""

    owner_kind: str  # "job" | "group"
    run_id: str
    owner_id: int
    status: RunStatus
    event_id: str
    timed_out: bool = False
    notify: bool = True  # False: the job had no rules as its run was requested; nothing to look up


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
    ended: Ended | None = None  # RunFinished, GroupRunFinished


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
        data = event.data
        ended = Ended("job", data.run_id, data.job_id, data.status, event.id, data.timed_out, data.notify)
        return Planned(event.id, RunFinished.routing_key, run=on_finished(event), ended=ended)
    if isinstance(event, GroupRunStarted):
        return Planned(event.id, GroupRunStarted.routing_key, group_runs=(on_group_started(event),))
    group = event.data
    ended = Ended("group", group.group_run_id, group.group_id, group.status, event.id)
    return Planned(
        event.id, GroupRunFinished.routing_key, group_runs=(on_group_finished(event),), ended=ended
    )


def _unknown(exc: ValidationError) -> UnknownEvent | None:
    """An event of a type the logsink does not record, told apart from a malformed one."""
    for error in exc.errors(include_url=False):
        if error["type"] in _UNKNOWN_TYPE and not error["loc"]:
            tag = (error.get("ctx") or {}).get("tag")
            return UnknownEvent(f"logsink does not record events of type {tag!r}")
    return None


# --- run records -----------------------------------------------------------------------------------


def job_fields(run_id: str, job_id: int, name: str, job_type: str, trigger: str) -> dict[str, Any]:
    return {
        RunField.RUN_ID: run_id,
        RunField.JOB_ID: job_id,
        RunField.JOB_NAME: name,
        RunField.JOB_TYPE: job_type,
        RunField.TRIGGER: trigger,
    }


def on_requested(event: RunRequested) -> RunChange:
    """Fills in a record not requested yet; the status only on insert (a later event got further)."""
    data = event.data
    fields = job_fields(data.run_id, data.job.job_id, data.job.name, data.job.job_type.value, data.trigger)
    fields[RunField.REQUESTED_AT] = data.requested_at
    fields[RunField.REQUESTED_BY] = data.requested_by
    fields[RunField.RUN_NUMBER] = run_number(data.run_id)
    if data.slot is not None:
        fields[RunField.SLOT] = data.slot
    if data.group_run_id is not None:
        fields[RunField.GROUP_RUN_ID] = data.group_run_id
        fields[RunField.GROUP_ID] = data.group_id
        fields[RunField.GROUP_NAME] = data.group_name
    queued = {RunField.STATUS: RunStatus.QUEUED.value}
    return RunChange(data.run_id, NOT_REQUESTED, fields, on_insert=queued)


def on_started(event: RunStarted) -> RunChange:
    """A later attempt of a run not terminal: who runs it, running, the first start time.

    A record that refuses it (terminal, or at this attempt or a later one already) takes it as three
    writes in this order (the repository keeps the order): a later attempt still says who ran it,
    the first start time stays, and only a queued run becomes running.
    """
    data = event.data
    fields = job_fields(data.run_id, data.job_id, data.job_name, data.job_type.value, data.trigger)
    fields[RunField.RUN_NUMBER] = run_number(data.run_id)
    taken_by = {RunField.EXECUTOR: data.executor, RunField.ATTEMPT: data.attempt}
    later_attempt = {RunField.ATTEMPT: {"$not": {"$gte": data.attempt}}}
    first_start = {RunField.STARTED_AT: data.started_at}
    running = {RunField.STATUS: RunStatus.RUNNING.value}
    queued = {RunField.STATUS: RunStatus.QUEUED.value}
    record = {RunField.ID: data.run_id}
    alone: tuple[Update, ...] = (
        ({**record, **later_attempt}, {"$set": {**fields, **taken_by}, "$setOnInsert": running}, True),
        (record, {"$min": first_start}, False),
        ({**record, **queued}, {"$set": running}, False),
    )
    return RunChange(
        data.run_id,
        {**later_attempt, **NOT_TERMINAL},
        {**fields, **taken_by, **running},
        minimum=first_start,
        alone=alone,
    )


def on_progress(event: RunProgress) -> RunChange:
    """A run's latest progress, in its record: only a newer snapshot replaces it, and none once the run
    is terminal (readers show progress only while it is not). A snapshot never creates a record."""
    data = event.data
    newer = {RunField.PROGRESS_AT: {"$not": {"$gte": data.at}}}
    progress = {RunField.PROGRESS: progress_snapshot(data)}
    return RunChange(data.run_id, {**NOT_TERMINAL, **newer}, progress, upsert=False)


def on_finished(event: RunFinished) -> RunChange:
    """The outcome of a record not terminal yet; a terminal record never changes again."""
    data = event.data
    finished = {
        RunField.RUN_ID: data.run_id,
        RunField.JOB_ID: data.job_id,
        RunField.RUN_NUMBER: run_number(data.run_id),
        RunField.STATUS: data.status.value,
        RunField.COUNTS: data.counts.model_dump(),
        RunField.FINISHED_AT: data.finished_at,
        RunField.DURATION_SECONDS: duration_seconds(data.started_at, data.finished_at),
        RunField.ERROR: data.error,
        RunField.REJECTS_FILE: data.rejects_file,
        RunField.FIRST_REJECTS: [reject.model_dump() for reject in data.first_rejects],
        RunField.LAST_LOG_SEQ: data.last_log_seq,
        RunField.FINISHED_EVENT_ID: event.id,
    }
    first_start = {RunField.STARTED_AT: data.started_at}
    return RunChange(data.run_id, NOT_TERMINAL, finished, minimum=first_start)


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
    member = {
        MemberField.RUN_ID: data.run_id,
        MemberField.JOB_ID: data.job.job_id,
        MemberField.REQUESTED_AT: data.requested_at,
    }
    fields = _group_run_fields(data.group_run_id)
    if data.group_id is not None:
        fields[GroupRunField.GROUP_ID] = data.group_id
    if data.group_name is not None:
        fields[GroupRunField.GROUP_NAME] = data.group_name
    update = {"$set": fields, "$addToSet": {GroupRunField.MEMBERS: member}, "$setOnInsert": _group_running()}
    return {GroupRunField.ID: data.group_run_id}, update, True


def on_group_started(event: GroupRunStarted) -> Update:
    data = event.data
    fields = _group_run_fields(data.group_run_id)
    fields[GroupRunField.GROUP_ID] = data.group_id
    fields[GroupRunField.GROUP_NAME] = data.group_name
    fields[GroupRunField.JOB_IDS] = list(data.job_ids)
    fields[GroupRunField.TRIGGER] = data.trigger.value
    first_start = {GroupRunField.STARTED_AT: data.started_at}
    update = {"$set": fields, "$min": first_start, "$setOnInsert": _group_running()}
    return {GroupRunField.ID: data.group_run_id}, update, True


def on_group_finished(event: GroupRunFinished) -> Update:
    data = event.data
    finished = _group_run_fields(data.group_run_id)
    finished[GroupRunField.GROUP_ID] = data.group_id
    finished[GroupRunField.STATUS] = data.status.value
    finished[GroupRunField.MEMBER_RUN_IDS] = list(data.member_run_ids)
    finished[GroupRunField.FINISHED_AT] = data.finished_at
    finished[GroupRunField.ERROR] = data.error
    finished[GroupRunField.FINISHED_EVENT_ID] = event.id
    not_terminal = {GroupRunField.ID: data.group_run_id, GroupRunField.STATUS: NOT_ENDED}
    return not_terminal, {"$set": finished}, True


def _group_run_fields(group_run_id: str) -> dict[str, Any]:
    return {GroupRunField.GROUP_RUN_ID: group_run_id, GroupRunField.RUN_NUMBER: run_number(group_run_id)}


def _group_running() -> dict[str, Any]:
    """A group-run record is inserted running (its first event may come from any of its members)."""
    return {GroupRunField.STATUS: RunStatus.RUNNING.value}


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
        run_id, at = planned.run.run_id, planned.run.sets[RunField.PROGRESS]["at"]
        current = newest.get(run_id)
        if current is None or at >= current[0]:
            if current is not None:
                superseded.add(current[1])
            newest[run_id] = (at, index)
        else:
            superseded.add(index)
    return superseded
