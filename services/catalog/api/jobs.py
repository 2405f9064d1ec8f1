"""Routes of the All jobs tab: jobs and their actions (edit, run now, stop, copy, delete, activate)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from services.catalog.api.deps import Operator, Viewer
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.domain import JobQuery
from services.catalog.job_schemas import (
    DeletedJobs,
    JobCopy,
    JobCreate,
    JobPatch,
    JobsDelete,
    JobsRun,
    JobsRunResults,
    JobUpdate,
    JobView,
    SchedulePreview,
)
from services.catalog.jobs import JobService
from services.catalog.schedule_preview import MAX_FIRES, PREVIEW_FROM, preview_schedule
from services.catalog.schemas import Page, RunAccepted
from shared.contracts.jobs import JobType

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=2**62)]
Confirm = Annotated[bool, Query(description="Must be true: the action needs confirmation.")]


def get_jobs(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


Jobs = Annotated[JobService, Depends(get_jobs)]


async def raw_body(request: Request) -> dict[str, Any]:
    """The request body as sent, to refuse fields the job specification does not have."""
    try:
        body = await request.json()
    except ValueError:
        return {}  # not JSON: the body model's own validation answers with a 422
    return body if isinstance(body, dict) else {}


Raw = Annotated[dict[str, Any], Depends(raw_body)]


@router.post("", status_code=201)
async def create_job(body: JobCreate, raw: Raw, jobs: Jobs, by: Operator) -> JobView:
    """Create an import or export job; "By" is the authenticated principal."""
    return await jobs.create(body, raw, by.name)


@router.get("")
async def list_jobs(
    jobs: Jobs,
    _: Viewer,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=100, description="Substring of the name.")] = None,
    job_type: JobType | None = None,
    state: Literal["active", "inactive"] | None = None,
    group_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    sort: Literal["id", "-id", "name", "-name", "created_at", "-created_at", "job_type", "-job_type"] = "id",
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[JobView]:
    """The All jobs tab: filter by name, type, state and group; sort; page."""
    query = JobQuery(name=name, job_type=job_type, state=state, group_id=group_id, sort=sort)
    items, total = await jobs.find(query, offset=offset, limit=limit)
    return paging.page(items, total, offset, limit)


@router.get("/{job_id}")
async def get_job(job_id: JobId, jobs: Jobs, _: Viewer) -> JobView:
    return await jobs.get(job_id)


@router.put("/{job_id}")
async def replace_job(job_id: JobId, body: JobUpdate, raw: Raw, jobs: Jobs, by: Operator) -> JobView:
    """Edit: `version` must be the version you read, else 409 (someone else saved first)."""
    return await jobs.replace(job_id, body, raw, by.name)


@router.patch("/{job_id}")
async def patch_job(job_id: JobId, body: JobPatch, raw: Raw, jobs: Jobs, by: Operator) -> JobView:
    return await jobs.patch(job_id, body, raw, by.name)


@router.post("/{job_id}/run", status_code=202)
async def run_job(job_id: JobId, jobs: Jobs, by: Operator) -> RunAccepted:
    """Run now: returns the new `JobID.RunID`; scheduled runs are not moved. Not for partner-feed jobs.

    503 when the scheduler does not answer in time: then nothing was started, nor will it be later.
    """
    return RunAccepted(run_id=await jobs.run_now(job_id, by.name))


@router.post("/{job_id}/dry-run", status_code=202)
async def dry_run_job(job_id: JobId, jobs: Jobs, by: Operator) -> RunAccepted:
    """Dry run of an import: reads the current source file, applies the mapping and every check, and
    reports what a run would insert, update, leave unchanged and reject (with the first rejects) —
    writing nothing, moving no file. Returns the new run's `JobID.RunID` (trigger `dry_run`); its
    record (`GET /runs/{run_id}`) has `dry_run: true`. An inactive job may be dry-run; an export is a
    422 ("dry run is for import jobs"). 503 as for Run now: nothing was started.
    """
    return RunAccepted(run_id=await jobs.dry_run(job_id, by.name))


@router.post("/run")
async def run_jobs(body: JobsRun, jobs: Jobs, by: Operator) -> JobsRunResults:
    """Bulk trigger: Run now for 1 to 5 jobs, each checked on its own; one result per job, in order.

    Always 200 when the request itself is valid: each result holds the job's new `run_id` or, under
    `error`, the refusal Run now would have answered (not found, inactive, expired, partner feed,
    running, scheduler unavailable). Look at every result, not at the status.
    """
    return JobsRunResults(results=await jobs.run_many(body.ids, by.name))


@router.post("/{job_id}/stop", status_code=202)
async def stop_job(job_id: JobId, jobs: Jobs, by: Operator, confirm: Confirm = False) -> RunAccepted:
    """Stop the job's running run (confirmation required)."""
    return RunAccepted(run_id=await jobs.stop(job_id, confirm, by.name))


@router.post("/{job_id}/copy", status_code=201)
async def copy_job(job_id: JobId, body: JobCopy, jobs: Jobs, by: Operator) -> JobView:
    """Copy an inactive, non-partner job under a new name; the copy is inactive."""
    return await jobs.copy(job_id, body.name, by.name)


@router.post("/{job_id}/activate")
async def activate_job(job_id: JobId, jobs: Jobs, by: Operator) -> JobView:
    return await jobs.set_active(job_id, True, by.name)


@router.post("/{job_id}/deactivate")
async def deactivate_job(job_id: JobId, jobs: Jobs, by: Operator) -> JobView:
    return await jobs.set_active(job_id, False, by.name)


@router.delete("/{job_id}", status_code=204)
async def delete_job(job_id: JobId, jobs: Jobs, by: Operator, confirm: Confirm = False) -> None:
    """Delete a job (confirmation required): 204, then 404 for the id. Records it loaded are not deleted."""
    await jobs.delete([job_id], confirm, by.name)


@router.post("/delete")
async def delete_jobs(body: Annotated[JobsDelete, Body()], jobs: Jobs, by: Operator) -> DeletedJobs:
    """Delete several jobs in one call: every id is checked first; all are deleted or none."""
    return DeletedJobs(deleted=await jobs.delete(body.ids, body.confirm, by.name))


@router.get("/{job_id}/schedule-preview")
async def job_schedule_preview(
    job_id: JobId,
    jobs: Jobs,
    _: Viewer,
    count: Annotated[int, Query(ge=1, le=MAX_FIRES)] = 10,
    start: Annotated[datetime | None, Query(alias="from", description=PREVIEW_FROM)] = None,
) -> SchedulePreview:
    """The next fire times of the job's schedule, in its zone and in UTC, flagging daylight-saving changes."""
    job = await jobs.load(job_id)
    return preview_schedule(job.schedule, count, start, kind="job", owner_id=job_id, spec=job.spec)
