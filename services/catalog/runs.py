"""Reading runs, group runs and run logs (the Completed jobs tab and "Viewing job execution logs").

The records are the logsink's; the catalog only reads them, as `shared.run_records` models them. A
run's log is read in order with gaps shown as "log lines missing"; a live tail follows a run in
progress until it is terminal and every line up to its last announced number has been sent (or
reported missing).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from services.catalog.rejects import RejectCursor, RunRejectPage, reject_view
from shared.contracts.jobs import JobType
from shared.contracts.runs import RejectSample, RunCounts, RunStatus, Trigger
from shared.errors import NotFound, ValidationFailed
from shared.notification_records import NotificationRecord, NotificationStatus, OwnerKind
from shared.run_records import TERMINAL as TERMINAL  # the stored terminal statuses (the CLI's tests)
from shared.run_records import (
    GroupMember,
    GroupRunField,
    GroupRunRecord,
    ProgressSnapshot,
    RunField,
    RunRecord,
    run_number,
)
from shared.runid import RunId
from shared.runlogs import missing_sequences

Document = dict[str, Any]

# --- views -----------------------------------------------------------------------------------------


class View(BaseModel):
    model_config = ConfigDict(from_attributes=True)


DisplayStatus = Literal["Success", "Failed", "Skipped", "Running", "Queued"]


def display_status(status: str) -> DisplayStatus:
    """The guide's Run status: Failed or Success (partial is a Success with rejects)."""
    if status in ("succeeded", "partial"):
        return "Success"
    if status in ("failed", "stopped"):
        return "Failed"
    if status == "skipped":  # nothing to import (an empty file, on_empty: skip): not a failure
        return "Skipped"
    return "Running" if status == "running" else "Queued"


# The record's progress as the API shows it (no docstring: it would become the schema's description).
class ProgressView(ProgressSnapshot):
    model_config = ConfigDict(from_attributes=True)


class RunView(View):
    run_id: str = Field(description="Job ID and Run ID: `JobID.RunID`.", examples=["12.3"])
    job_id: int
    group_run_id: str | None = Field(default=None, description="Group ID and Run ID: `GroupID.RunID`.")
    group_id: int | None = None
    group_name: str | None = Field(default=None, description="Group: the group the run belongs to.")
    job_name: str | None = Field(default=None, description="Name of the job.")
    job_type: JobType | None = None
    trigger: Trigger | None = None
    status: RunStatus
    run_status: DisplayStatus = Field(description="Run status as the console shows it.")
    ended: bool = Field(description="The run has ended: its status, counts and log will not change.")
    requested_at: datetime | None = None
    requested_by: str | None = None
    start_time: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    counts: RunCounts = RunCounts()
    dry_run: bool = Field(
        default=False,
        description="A dry run (trigger `dry_run`): nothing was written; `counts` are what a real run "
        "would insert, update, leave unchanged and reject.",
    )
    first_rejects: list[RejectSample] = Field(
        default=[], description="A dry run's first rejected records (at most 20), in file order."
    )
    rejects_file: str | None = None
    error: str | None = None
    executor: str | None = Field(default=None, description="The executor that ran it (the last attempt's).")
    attempt: int | None = None
    last_log_seq: int | None = Field(default=None, description="Number of the last log line, once finished.")
    progress: ProgressView | None = Field(default=None, description="Latest progress while running.")


class GroupRunView(View):
    group_run_id: str = Field(description="Group ID and Run ID: `GroupID.RunID`.", examples=["2.5"])
    group_id: int | None = None
    group_name: str | None = None
    trigger: Trigger | None = None
    status: RunStatus
    run_status: DisplayStatus
    ended: bool = Field(description="The group run has ended: its status will not change.")
    job_ids: list[int] = Field(default=[], description="The group's jobs in order, when the run started.")
    start_time: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    member_run_ids: list[str] = Field(default=[], description="Member runs (`JobID.RunID`) in order.")


class GroupRunDetail(GroupRunView):
    members: list[RunView]


class RunLogLine(View):
    seq: int
    at: datetime
    level: str
    message: str
    fields: dict[str, str | int | float | bool | None] = {}


class RunLogPage(View):
    run_id: str
    lines: list[RunLogLine]
    missing: list[tuple[int, int]] = Field(description="Gaps in the numbering: log lines missing.")
    next_after: int = Field(description="Pass as `after` to read the next page.")
    complete: bool = Field(description="The run is terminal and no line after this page exists.")
    next: str | None = Field(
        default=None, description="The next page's relative URL (`after=next_after`); null once complete."
    )


class NotificationView(View):
    id: str = Field(description="Stable per (run, rule, channel): the webhook's `webhook-id`.")
    rule: int = Field(description="The rule's index in the job's (or group's) `notifications`.")
    channel_id: int
    channel_name: str
    channel_kind: Literal["smtp", "webhook"]
    recipient: str = Field(description="The mail's addresses (comma-separated), or the webhook URL.")
    outcome: str = Field(description="The run's outcome that matched the rule (failed, recovered, …).")
    status: NotificationStatus = Field(
        description="pending (to be sent or retried), sent or failed (given up)."
    )
    status_text: str = Field(description="The status in words, as the console and the CLI show it.")
    attempts: int
    last_error: str | None = Field(default=None, description="Why the last attempt failed (no secret in it).")
    created_at: datetime
    sent_at: datetime | None = None


class NotificationList(View):
    items: list[NotificationView] = Field(description="By rule, then channel.")


def notification_status_text(status: NotificationStatus, attempts: int) -> str:
    """In words: whether it is still on its way (and retried), sent, or given up."""
    tries = f"{attempts} attempt{'' if attempts == 1 else 's'}"
    if status is NotificationStatus.SENT:
        return "Sent"
    if status is NotificationStatus.FAILED:
        return f"Failed after {tries}, given up"
    return f"Retrying ({tries} failed)" if attempts else "Waiting to be sent"


# --- queries ---------------------------------------------------------------------------------------

SORTS: dict[str, list[tuple[str, int]]] = {
    "requested_at": [(RunField.REQUESTED_AT, 1)],
    "start_time": [(RunField.STARTED_AT, 1)],
    "finished_at": [(RunField.FINISHED_AT, 1)],
    "duration": [(RunField.DURATION_SECONDS, 1)],
    "run_id": [(RunField.JOB_ID, 1), (RunField.RUN_NUMBER, 1)],
    "job_name": [(RunField.JOB_NAME, 1)],
    "status": [(RunField.STATUS, 1)],
}
SortKey = Literal[
    "requested_at", "-requested_at", "start_time", "-start_time", "finished_at", "-finished_at",
    "duration", "-duration", "run_id", "-run_id", "job_name", "-job_name", "status", "-status",
]  # fmt: skip


@dataclass(frozen=True)
class RunQuery:
    job_id: int | None = None
    group_id: int | None = None
    group_run_id: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    job_type: JobType | None = None
    trigger: Trigger | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    sort: SortKey = "-requested_at"

    def filter(self) -> Document:
        ids = {
            RunField.JOB_ID: self.job_id,
            RunField.GROUP_ID: self.group_id,
            RunField.GROUP_RUN_ID: self.group_run_id,
        }
        filter_: Document = {name: value for name, value in ids.items() if value is not None}
        if self.statuses:
            filter_[RunField.STATUS] = _any_of(self.statuses)
        if self.job_type is not None:
            filter_[RunField.JOB_TYPE] = self.job_type.value
        if self.trigger is not None:
            filter_[RunField.TRIGGER] = self.trigger.value
        started: Document = {}
        if self.started_from is not None:
            started["$gte"] = self.started_from
        if self.started_to is not None:
            started["$lt"] = self.started_to
        if started:
            filter_[RunField.STARTED_AT] = started
        return filter_

    def sort_spec(self) -> list[tuple[str, int]]:
        direction = -1 if self.sort.startswith("-") else 1
        keys = [(field, direction) for field, _ in SORTS[self.sort.lstrip("-")]]
        return [*keys, (RunField.JOB_ID, direction), (RunField.RUN_NUMBER, direction)]  # stable across pages


def _any_of(statuses: tuple[RunStatus, ...]) -> Document:
    return {"$in": [status.value for status in statuses]}


class RunsReadModel(Protocol):
    """The logsink's records, read as `shared.run_records` models them; log lines and rejects as stored."""

    async def page(
        self, filter_: Document, *, sort: list[tuple[str, int]], offset: int, limit: int
    ) -> tuple[list[RunRecord], int]: ...

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def of_group_run(self, group_run_id: str) -> list[RunRecord]: ...

    async def logs(self, run_id: str, *, after: int, limit: int) -> list[Document]: ...

    async def group_runs_page(
        self, filter_: Document, *, offset: int, limit: int
    ) -> tuple[list[GroupRunRecord], int]: ...

    async def group_run(self, group_run_id: str) -> GroupRunRecord | None: ...

    async def rejects(
        self, run_id: str, *, after: RejectCursor | None, offset: int, limit: int
    ) -> tuple[list[Document], int]: ...

    async def notifications_of(self, owner_kind: OwnerKind, run_id: str) -> list[NotificationRecord]:
        """The notifications of a run (`job`) or of a group run (`group`), by rule then channel."""
        ...


# --- the live tail's events ------------------------------------------------------------------------


@dataclass(frozen=True)
class TailEvent:
    """One Server-Sent Event: `line`, `missing` (log lines missing), `status` or `end`."""

    event: str
    data: Document
    id: int | None = None


# --- use cases -------------------------------------------------------------------------------------


class RunsService:
    def __init__(self, read: RunsReadModel, *, poll_interval: float = 0.25, gap_grace: float = 5.0) -> None:
        self.read = read
        self.poll_interval = poll_interval
        self.gap_grace = gap_grace  # how long a gap may be "still arriving" before it is shown missing

    async def list_runs(self, query: RunQuery, *, offset: int, limit: int) -> tuple[list[RunView], int]:
        runs, total = await self.read.page(query.filter(), sort=query.sort_spec(), offset=offset, limit=limit)
        return [run_view(run) for run in runs], total

    async def get_run(self, run_id: str) -> RunView:
        return run_view(await self._run(run_id))

    async def list_group_runs(
        self, *, group_id: int | None, statuses: tuple[RunStatus, ...], offset: int, limit: int
    ) -> tuple[list[GroupRunView], int]:
        filter_: Document = {}
        if group_id is not None:
            filter_[GroupRunField.GROUP_ID] = group_id
        if statuses:
            filter_[GroupRunField.STATUS] = _any_of(statuses)
        group_runs, total = await self.read.group_runs_page(filter_, offset=offset, limit=limit)
        return [group_run_view(group_run) for group_run in group_runs], total

    async def get_group_run(self, group_run_id: str) -> GroupRunDetail:
        group_run_id = str(_parse(group_run_id, "group_run_id"))
        group_run = await self.read.group_run(group_run_id)
        if group_run is None:
            raise NotFound(f"group run {group_run_id} does not exist", field="group_run_id")
        members = order_members(group_run, await self.read.of_group_run(group_run_id))
        view = group_run_view(group_run)
        ordered_ids = [member.run_id for member in members]
        return GroupRunDetail(
            **view.model_dump() | {"member_run_ids": ordered_ids},
            members=[run_view(member) for member in members],
        )

    async def run_logs(self, run_id: str, *, after: int, limit: int) -> RunLogPage:
        run = await self._run(run_id)
        docs = await self.read.logs(run.run_id, after=after, limit=limit)
        lines = [RunLogLine.model_validate(doc) for doc in docs]
        last_page = len(lines) < limit  # only the last page can compare with the announced end
        announced = run.last_log_seq if last_page else None
        gaps = missing_sequences([line.seq for line in lines], start=after + 1, last_seq=announced)
        next_after = max([after, *(line.seq for line in lines), *(end for _, end in gaps)])
        complete = last_page and run.ended
        return RunLogPage(
            run_id=run.run_id, lines=lines, missing=gaps, next_after=next_after, complete=complete
        )

    async def run_rejects(self, run_id: str, *, after: str | None, offset: int, limit: int) -> RunRejectPage:
        """Rejects in (file, line) order; one more than asked is read to know whether a page follows."""
        run = await self._run(run_id)
        if after and offset:
            raise ValidationFailed("page with either after or offset, not both", field="offset")
        cursor = RejectCursor.parse(after) if after else None
        docs, total = await self.read.rejects(run.run_id, after=cursor, offset=offset, limit=limit + 1)
        items = [reject_view(doc) for doc in docs[:limit]]
        last = docs[limit - 1] if len(docs) > limit else None
        next_after = RejectCursor(int(last["file"]), int(last["line"])).text() if last else None
        return RunRejectPage(
            run_id=run.run_id, items=items, total=total, offset=offset, limit=limit, next_after=next_after
        )

    async def run_notifications(self, run_id: str) -> NotificationList:
        run = await self._run(run_id)  # 404 for a run that does not exist
        return _notification_list(await self.read.notifications_of("job", run.run_id))

    async def group_run_notifications(self, group_run_id: str) -> NotificationList:
        group_run_id = str(_parse(group_run_id, "group_run_id"))
        if await self.read.group_run(group_run_id) is None:
            raise NotFound(f"group run {group_run_id} does not exist", field="group_run_id")
        return _notification_list(await self.read.notifications_of("group", group_run_id))

    async def tail_logs(self, run_id: str, *, after: int = 0) -> AsyncGenerator[TailEvent, None]:
        """Lines in order while the run is in progress; ends once it is terminal and all lines are out.

        A gap is reported as missing once it has lasted `gap_grace` seconds (lines may still be on
        their way), or at once below the end of a finished run whose later lines are all stored.
        """
        run = await self._run(run_id)  # 404 before the stream starts
        tail = _Tail(cursor=after, grace=self.gap_grace)
        status: RunStatus | None = None
        while True:
            if run.status != status:
                status = run.status
                view = {"status": status.value, "run_status": display_status(status), "ended": run.ended}
                yield TailEvent("status", view)
            last_seq = run.last_log_seq or 0
            docs = await self.read.logs(run.run_id, after=tail.cursor, limit=500)
            for event in tail.advance(docs, terminal=run.ended, last_seq=last_seq):
                yield event
            if run.ended and tail.cursor >= last_seq:
                yield TailEvent("end", {"status": run.status.value, "last_log_seq": last_seq}, id=tail.cursor)
                return
            if len(docs) < 500:
                await asyncio.sleep(self.poll_interval)
            run = await self._run(run_id)

    async def _run(self, run_id: str) -> RunRecord:
        run = await self.read.get(str(_parse(run_id, "run_id")))
        if run is None:
            raise NotFound(f"run {run_id} does not exist", field="run_id")
        return run


@dataclass
class _Tail:
    cursor: int
    grace: float
    gap_seen_at: float | None = None

    def advance(self, docs: list[Document], *, terminal: bool, last_seq: int) -> list[TailEvent]:
        events: list[TailEvent] = []
        for doc in docs:
            seq = int(doc["seq"])
            if seq > self.cursor + 1:
                if not self._gap_lasted():
                    return events  # wait: the lines in between may still be arriving
                events.append(_missing(self.cursor + 1, seq - 1))
            events.append(TailEvent("line", RunLogLine.model_validate(doc).model_dump(mode="json"), id=seq))
            self.cursor, self.gap_seen_at = seq, None
        if terminal and not docs and self.cursor < last_seq and self._gap_lasted():
            events.append(_missing(self.cursor + 1, last_seq))
            self.cursor, self.gap_seen_at = last_seq, None
        return events

    def _gap_lasted(self) -> bool:
        now = time.monotonic()
        if self.gap_seen_at is None:
            self.gap_seen_at = now
        return now - self.gap_seen_at >= self.grace


def _missing(first: int, last: int) -> TailEvent:
    return TailEvent("missing", {"from": first, "to": last, "message": "log lines missing"}, id=last)


def _parse(run_id: str, field: str) -> RunId:
    try:
        return RunId.parse(run_id)
    except Exception as exc:
        raise NotFound(f"'{run_id}' is not a run id", field=field) from exc


# --- records → views ------------------------------------------------------------------------------


def run_view(run: RunRecord) -> RunView:
    """The record as the API shows it; its progress only while the run is in progress."""
    shown = _shown(run) | {"dry_run": run.trigger == Trigger.DRY_RUN}
    if run.ended:
        shown["progress"] = None
    return RunView.model_validate(shown)


def group_run_view(group_run: GroupRunRecord) -> GroupRunView:
    """The record as the API shows it; its members in order, once it finished in the order it ran them."""
    members = group_run.member_run_ids or [m.run_id for m in order_members(group_run, group_run.members)]
    shown = _shown(group_run) | {"duration_seconds": group_run.duration_seconds, "member_run_ids": members}
    return GroupRunView.model_validate(shown)


def _shown(record: RunRecord | GroupRunRecord) -> Document:
    """A record's fields (a view takes those it shows), its start time, and its status as the console
    shows it."""
    status = {"run_status": display_status(record.status), "ended": record.ended}
    return record.model_dump() | {"start_time": record.started_at, **status}


def _notification_list(records: list[NotificationRecord]) -> NotificationList:
    return NotificationList(items=[notification_view(record) for record in records])


def notification_view(record: NotificationRecord) -> NotificationView:
    text = notification_status_text(record.status, record.attempts)
    return NotificationView.model_validate(record.model_dump() | {"status_text": text})


# A member run: its run record, or its entry in the group-run record.
MemberT = TypeVar("MemberT", RunRecord, GroupMember)


def order_members(group_run: GroupRunRecord, runs: list[MemberT]) -> list[MemberT]:
    """Members in the group's order: the order the group run finished with, else the jobs' order."""
    final = {run_id: i for i, run_id in enumerate(group_run.member_run_ids)}
    position = {job_id: i for i, job_id in enumerate(group_run.job_ids)}
    big = len(final) + len(position) + 1

    def key(run: MemberT) -> tuple[int, int, str, int]:
        requested = run.requested_at
        return (
            final.get(run.run_id, big),
            position.get(run.job_id, big),
            requested.isoformat() if requested else "",
            run_number(run.run_id),
        )

    return sorted(runs, key=key)
