"""Routes of completed and running runs, and their execution logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.catalog.api.deps import Service, Viewer
from services.catalog.api.resources import ERRORS, Limit, Offset
from services.catalog.schemas import Page, RunLogPage, RunView
from shared.contracts.runs import RunStatus

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["runs"])  # type: ignore[arg-type]


@router.get("/runs")
async def list_runs(
    service: Service,
    _: Viewer,
    job_id: Annotated[int | None, Query(ge=1)] = None,
    status: RunStatus | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[RunView]:
    """Runs, newest first (the Completed jobs tab)."""
    filter_: dict[str, object] = {}
    if job_id is not None:
        filter_["job_id"] = job_id
    if status is not None:
        filter_["status"] = status.value
    items, total = await service.list_runs(filter_, offset=offset, limit=limit)
    return Page(items=items, total=total, offset=offset, limit=limit)


@router.get("/runs/{run_id}")
async def get_run(run_id: str, service: Service, _: Viewer) -> RunView:
    return await service.get_run(run_id)


@router.get("/runs/{run_id}/logs")
async def get_run_logs(
    run_id: str,
    service: Service,
    _: Viewer,
    after: Annotated[int, Query(ge=0, description="Return lines numbered after this one.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> RunLogPage:
    """The run's execution log in order; `missing` lists numbering gaps (log lines missing)."""
    return await service.run_logs(run_id, after=after, limit=limit)
