"""Routes of runs and group runs (the Completed jobs tab), of run logs, paged or tailed live (SSE), and
of a run's rejected records."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from services.catalog.api.deps import Viewer
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.rejects import CURSOR_PATTERN, RunRejectPage
from services.catalog.runs import (
    GroupRunDetail,
    GroupRunView,
    NotificationList,
    RunLogPage,
    RunQuery,
    RunsService,
    RunView,
    SortKey,
    TailEvent,
)
from services.catalog.schemas import Page
from shared.contracts.jobs import JobType
from shared.contracts.runs import RunStatus, Trigger

router = APIRouter(prefix="/api/v1", tags=["runs"])
HEARTBEAT_SECONDS = 15.0


def get_runs(request: Request) -> RunsService:
    runs: RunsService = request.app.state.runs
    return runs


Runs = Annotated[RunsService, Depends(get_runs)]
Statuses = Annotated[list[RunStatus] | None, Query(description="One or more statuses.")]


@router.get("/runs")
async def list_runs(
    runs: Runs,
    _: Viewer,
    paging: Paging,
    job_id: Annotated[int | None, Query(ge=1)] = None,
    group_id: Annotated[int | None, Query(ge=1)] = None,
    group_run_id: Annotated[str | None, Query(pattern=r"^[1-9][0-9]*\.[1-9][0-9]*$")] = None,
    status: Statuses = None,
    job_type: JobType | None = None,
    trigger: Trigger | None = None,
    started_from: Annotated[datetime | None, Query(description="Start time at or after.")] = None,
    started_to: Annotated[datetime | None, Query(description="Start time before.")] = None,
    sort: SortKey = "-requested_at",
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[RunView]:
    """Runs, filtered and sorted (newest first by default): the Completed jobs tab."""
    query = RunQuery(
        job_id=job_id,
        group_id=group_id,
        group_run_id=group_run_id,
        statuses=tuple(status or ()),
        job_type=job_type,
        trigger=trigger,
        started_from=started_from,
        started_to=started_to,
        sort=sort,
    )
    items, total = await runs.list_runs(query, offset=offset, limit=limit)
    return paging.page(items, total, offset, limit)


@router.get("/runs/{run_id}")
async def get_run(run_id: str, runs: Runs, _: Viewer) -> RunView:
    return await runs.get_run(run_id)


@router.get("/runs/{run_id}/logs")
async def get_run_logs(
    run_id: str,
    runs: Runs,
    _: Viewer,
    paging: Paging,
    after: Annotated[int, Query(ge=0, description="Return lines numbered after this one.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> RunLogPage:
    """The run's execution log in order; `missing` lists numbering gaps (log lines missing).

    `next` (also the `Link` header) reads on after this page; null once the log is `complete`. While
    the run is in progress it may answer no line yet: follow it again later, or tail the stream.
    """
    page = await runs.run_logs(run_id, after=after, limit=limit)
    following = None if page.complete else paging.link(after=page.next_after, limit=limit)
    paging.advertise(following)
    return page.model_copy(update={"next": following})


@router.get("/runs/{run_id}/rejects")
async def get_run_rejects(
    run_id: str,
    runs: Runs,
    _: Viewer,
    paging: Paging,
    after: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`FILE:LINE`: rejects after this one (`next_after`)."),
    ] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RunRejectPage:
    """The run's rejected records in file and line order: line, field, reason and the raw record.

    Page with `offset`, or — cheaper for long lists — with `after` set to the previous page's
    `next_after` (not both). `next` (also the `Link` header) is the next page by the cursor; `prev`
    is given when paging by offset. The rejects file on the connection holds the same records (line,
    field, reason); rejects are kept 14 days.
    """
    page = await runs.run_rejects(run_id, after=after, offset=offset, limit=limit)
    following = page.next_after and paging.link(after=page.next_after, offset=None, limit=limit)
    preceding = paging.link(offset=max(0, offset - limit), limit=limit) if offset and not after else None
    paging.advertise(following, preceding)
    return page.model_copy(update={"next": following, "prev": preceding})


@router.get("/runs/{run_id}/notifications")
async def get_run_notifications(run_id: str, runs: Runs, _: Viewer) -> NotificationList:
    """The run's notifications, by rule then channel: channel, recipient, status, attempts and last error.

    The logsink writes one per (run, rule, channel) once the run has ended and sends it; a run that
    notified nobody has none. No secret is ever shown.
    """
    return await runs.run_notifications(run_id)


@router.get(
    "/runs/{run_id}/logs/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_run_logs(
    run_id: str,
    runs: Runs,
    _: Viewer,
    after: Annotated[int, Query(ge=0, description="Start after this line number.")] = 0,
    last_event_id: Annotated[str | None, Header(description="Resume after a reconnect.")] = None,
) -> StreamingResponse:
    """Live tail (Server-Sent Events): `line`, `missing` ("log lines missing"), `status` and a final `end`.

    The stream ends when the run is terminal and every line up to its last number has been sent or
    reported missing.
    """
    if last_event_id and last_event_id.isdigit():
        after = max(after, int(last_event_id))
    events = runs.tail_logs(run_id, after=after)
    first = await anext(events)  # a run that does not exist answers 404, not an empty stream
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_sse(first, events), media_type="text/event-stream", headers=headers)


async def _sse(first: TailEvent, events: AsyncGenerator[TailEvent, None]) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    yield _format(first)
    pending: asyncio.Task[TailEvent] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
            if not done:
                yield ": keep-alive\n\n"
                continue
            task, pending = pending, None
            try:
                event = task.result()
            except StopAsyncIteration:
                return
            yield _format(event)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        with contextlib.suppress(BaseException):
            await events.aclose()


def _format(event: TailEvent) -> str:
    head = f"event: {event.event}\n"
    if event.id is not None:
        head += f"id: {event.id}\n"
    return f"{head}data: {json.dumps(event.data, default=str)}\n\n"


@router.get("/group-runs", tags=["group runs"])
async def list_group_runs(
    runs: Runs,
    _: Viewer,
    paging: Paging,
    group_id: Annotated[int | None, Query(ge=1)] = None,
    status: Statuses = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[GroupRunView]:
    """Group runs, newest first, with their member runs in order."""
    items, total = await runs.list_group_runs(
        group_id=group_id, statuses=tuple(status or ()), offset=offset, limit=limit
    )
    return paging.page(items, total, offset, limit)


@router.get("/group-runs/{group_run_id}", tags=["group runs"])
async def get_group_run(group_run_id: str, runs: Runs, _: Viewer) -> GroupRunDetail:
    """A group run and each member run's detail, in the group's order."""
    return await runs.get_group_run(group_run_id)


@router.get("/group-runs/{group_run_id}/notifications", tags=["group runs"])
async def get_group_run_notifications(group_run_id: str, runs: Runs, _: Viewer) -> NotificationList:
    """The group run's notifications (sent once its last step has ended), by rule then channel."""
    return await runs.group_run_notifications(group_run_id)
