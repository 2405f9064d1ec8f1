"""Routes of connections, tables and jobs."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from services.catalog.api.deps import Admin, Operator, Service, Viewer
from services.catalog.schemas import (
    ConnectionCreate,
    ConnectionView,
    ErrorResponse,
    JobCreate,
    JobView,
    Page,
    RunAccepted,
    TableCreate,
    TableView,
)

ERRORS = {status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/v1", responses=ERRORS)  # type: ignore[arg-type]

Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.post("/connections", status_code=201, tags=["connections"])
async def create_connection(body: ConnectionCreate, service: Service, by: Admin) -> ConnectionView:
    """Add an SFTP connection; its password or private key is stored encrypted and never returned."""
    return await service.create_connection(body, by)


@router.get("/connections/{connection_id}", tags=["connections"])
async def get_connection(
    connection_id: Annotated[int, Path(ge=1)], service: Service, _: Viewer
) -> ConnectionView:
    return await service.get_connection(connection_id)


@router.get("/connections", tags=["connections"])
async def list_connections(
    service: Service, _: Viewer, offset: Offset = 0, limit: Limit = 50
) -> Page[ConnectionView]:
    items, total = await service.list_connections(offset=offset, limit=limit)
    return Page(items=items, total=total, offset=offset, limit=limit)


@router.post("/tables", status_code=201, tags=["tables"])
async def create_table(body: TableCreate, service: Service, by: Admin) -> TableView:
    return await service.create_table(body, by)


@router.get("/tables/{name}", tags=["tables"])
async def get_table(name: str, service: Service, _: Viewer) -> TableView:
    return await service.get_table(name)


@router.get("/tables", tags=["tables"])
async def list_tables(service: Service, _: Viewer, offset: Offset = 0, limit: Limit = 50) -> Page[TableView]:
    items, total = await service.list_tables(offset=offset, limit=limit)
    return Page(items=items, total=total, offset=offset, limit=limit)


@router.post("/jobs", status_code=201, tags=["jobs"])
async def create_job(body: JobCreate, service: Service, by: Operator) -> JobView:
    return await service.create_job(body, by)


@router.get("/jobs/{job_id}", tags=["jobs"])
async def get_job(job_id: Annotated[int, Path(ge=1)], service: Service, _: Viewer) -> JobView:
    return await service.get_job(job_id)


@router.get("/jobs", tags=["jobs"])
async def list_jobs(
    service: Service,
    _: Viewer,
    name: Annotated[str | None, Query(max_length=100, description="Substring of the job name.")] = None,
    state: Literal["active", "inactive"] | None = None,
    sort: Literal["id", "-id", "name", "-name", "created_at", "-created_at"] = "id",
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[JobView]:
    filter_: dict[str, object] = {}
    if name:
        filter_["name"] = {"$regex": re.escape(name), "$options": "i"}
    if state:
        filter_["active"] = state == "active"
    field = sort.replace("id", "_id") if sort.lstrip("-") == "id" else sort
    items, total = await service.list_jobs(filter_, sort=field, offset=offset, limit=limit)
    return Page(items=items, total=total, offset=offset, limit=limit)


@router.post("/jobs/{job_id}/run", status_code=202, tags=["jobs"])
async def run_job(job_id: Annotated[int, Path(ge=1)], service: Service, by: Operator) -> RunAccepted:
    """Run now: returns the new `JobID.RunID`; does not move scheduled runs."""
    return RunAccepted(run_id=await service.run_now(job_id, by))
