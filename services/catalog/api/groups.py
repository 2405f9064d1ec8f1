"""Routes of the Groups tab: groups of jobs run in order."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from services.catalog.api.deps import Operator, Viewer
from services.catalog.api.jobs import Confirm
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.group_schemas import GroupCreate, GroupRunAccepted, GroupUpdate, GroupView
from services.catalog.groups import GroupService
from services.catalog.job_schemas import SchedulePreview
from services.catalog.schedule_preview import MAX_FIRES, PREVIEW_FROM, preview_schedule
from services.catalog.schemas import Page

router = APIRouter(prefix="/api/v1/groups", tags=["groups"])

GroupId = Annotated[int, Path(ge=1, le=2**62)]


def get_groups(request: Request) -> GroupService:
    service: GroupService = request.app.state.groups
    return service


Groups = Annotated[GroupService, Depends(get_groups)]


@router.post("", status_code=201)
async def create_group(body: GroupCreate, groups: Groups, by: Operator) -> GroupView:
    """Create a group; a job belongs to at most one group."""
    return await groups.create(body, by.name)


@router.get("")
async def list_groups(
    groups: Groups,
    _: Viewer,
    paging: Paging,
    sort: Literal["id", "-id", "name", "-name", "created_at", "-created_at"] = "id",
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[GroupView]:
    items, total = await groups.find(sort=sort, offset=offset, limit=limit)
    return paging.page(items, total, offset, limit)


@router.get("/{group_id}")
async def get_group(group_id: GroupId, groups: Groups, _: Viewer) -> GroupView:
    return await groups.get(group_id)


@router.put("/{group_id}")
async def replace_group(group_id: GroupId, body: GroupUpdate, groups: Groups, by: Operator) -> GroupView:
    """Edit or reorder (give `job_ids` in the new order); `version` must be the one you read."""
    return await groups.replace(group_id, body, by.name)


@router.delete("/{group_id}", status_code=204)
async def delete_group(group_id: GroupId, groups: Groups, by: Operator, confirm: Confirm = False) -> None:
    """Delete a group (confirmation required); its jobs stay."""
    await groups.delete(group_id, confirm, by.name)


@router.post("/{group_id}/run", status_code=202)
async def run_group(group_id: GroupId, groups: Groups, by: Operator) -> GroupRunAccepted:
    """Run now: returns `GroupID.RunID`; members run in order.

    503 when the scheduler does not answer in time: then nothing was started, nor will it be later.
    """
    return GroupRunAccepted(group_run_id=await groups.run_now(group_id, by.name))


@router.post("/{group_id}/stop", status_code=202)
async def stop_group(
    group_id: GroupId, groups: Groups, by: Operator, confirm: Confirm = False
) -> GroupRunAccepted:
    """Stop the running group run: the current member stops, no further member runs."""
    return GroupRunAccepted(group_run_id=await groups.stop(group_id, confirm, by.name))


@router.post("/{group_id}/activate")
async def activate_group(group_id: GroupId, groups: Groups, by: Operator) -> GroupView:
    return await groups.set_active(group_id, True, by.name)


@router.post("/{group_id}/deactivate")
async def deactivate_group(group_id: GroupId, groups: Groups, by: Operator) -> GroupView:
    return await groups.set_active(group_id, False, by.name)


@router.get("/{group_id}/schedule-preview")
async def group_schedule_preview(
    group_id: GroupId,
    groups: Groups,
    _: Viewer,
    count: Annotated[int, Query(ge=1, le=MAX_FIRES)] = 10,
    start: Annotated[datetime | None, Query(alias="from", description=PREVIEW_FROM)] = None,
) -> SchedulePreview:
    return preview_schedule(
        (await groups.load(group_id)).schedule, count, start, kind="group", owner_id=group_id
    )
