"""Route of the audit trail: who changed what, when (viewer: entries hold no secret, and every viewer
already reads the definitions they describe; the console's job page shows a job's history from it)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from services.catalog import audit
from services.catalog.api.deps import Service, Viewer
from services.catalog.api.resources import Limit, Offset
from services.catalog.domain.audit import AuditQuery
from services.catalog.schemas import Response

router = APIRouter(prefix="/api/v1", tags=["audit"])

Kind = Literal["job", "group", "table", "connection", "notification channel", "key", "token"]


class AuditEntryView(Response):
    at: datetime
    actor: str
    kind: str
    item_id: str
    action: str
    before_version: int | None
    after_version: int | None
    changes: dict[str, dict[str, Any]]
    detail: dict[str, Any]


class AuditPage(Response):
    items: list[AuditEntryView]
    total: int
    offset: int
    limit: int
    next: str | None  # the next page's URL (same filters), none on the last page


@router.get("/audit")
async def list_audit(
    request: Request,
    service: Service,
    _: Viewer,
    kind: Kind | None = None,
    item_id: Annotated[
        str | None, Query(max_length=200, description="The record's id (a table's name).")
    ] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="From this instant (inclusive).")] = None,
    until: Annotated[datetime | None, Query(description="Before this instant (exclusive).")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> AuditPage:
    """The audit trail, newest first: every change (who, when, what, versions, a diff without secrets)."""
    query = AuditQuery(kind=kind, item_id=item_id, actor=actor, since=since, until=until)
    entries, total = await audit.find(service.repo, query, offset=offset, limit=limit)
    next_link = None
    if offset + len(entries) < total:
        params = {key: value for key, value in request.query_params.items() if key not in ("offset", "limit")}
        next_link = f"{request.url.path}?{urlencode(params | {'offset': offset + limit, 'limit': limit})}"
    items = [AuditEntryView.model_validate(asdict(entry)) for entry in entries]
    return AuditPage(items=items, total=total, offset=offset, limit=limit, next=next_link)
