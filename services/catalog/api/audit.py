"""Route of the audit trail: who changed what, when (viewer: entries hold no secret, and every viewer
already reads the definitions they describe; the console's job page shows a job's history from it)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from services.catalog import audit
from services.catalog.api.deps import Service, Viewer
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.domain.audit import AuditQuery
from services.catalog.schemas import Page, Response

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


@router.get("/audit")
async def list_audit(
    service: Service,
    _: Viewer,
    paging: Paging,
    kind: Kind | None = None,
    item_id: Annotated[
        str | None, Query(max_length=200, description="The record's id (a table's name).")
    ] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[datetime | None, Query(description="From this instant (inclusive).")] = None,
    until: Annotated[datetime | None, Query(description="Before this instant (exclusive).")] = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> Page[AuditEntryView]:
    """The audit trail, newest first: every change (who, when, what, versions, a diff without secrets)."""
    query = AuditQuery(kind=kind, item_id=item_id, actor=actor, since=since, until=until)
    entries, total = await audit.find(service.repo, query, offset=offset, limit=limit)
    items = [AuditEntryView.model_validate(asdict(entry)) for entry in entries]
    return paging.page(items, total, offset, limit)
