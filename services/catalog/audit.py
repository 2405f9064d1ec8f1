"""Audit use cases: the entries a change carries (`Change.audit`), direct ones (run-now, stop) and reads.

Hook for the tokens API: `token_entry(by, name, action, before=…, after=…)` gives the entry of a token's
create / revoke; return it in the `Change.audit` of the same `commit` (or `repo.audit.add([...])` within
the `atomically` that changes the token). A token's hash and value are never put in it (redacted anyway).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from services.catalog.domain.audit import AuditEntry, AuditQuery, entry
from services.catalog.ports import CatalogRecords, CatalogRepository, UnitOfWork

T = TypeVar("T")
SYSTEM = "system"  # the actor of changes no one asked for (expiry)


def json_form(record: BaseModel) -> dict[str, Any]:
    form: dict[str, Any] = record.model_dump(mode="json")
    return form


def change_entry(
    by: str,
    kind: str,
    item_id: object,
    action: str,
    *,
    before: BaseModel | Mapping[str, Any] | None = None,
    after: BaseModel | Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The entry of a change made now by `by` (records compared in their JSON form)."""

    def form(value: BaseModel | Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        return json_form(value) if isinstance(value, BaseModel) else value

    return entry(
        at=datetime.now(UTC),
        actor=by,
        kind=kind,
        item_id=item_id,
        action=action,
        before=form(before),
        after=form(after),
        detail=detail,
    )


def token_entry(
    by: str,
    token_name: str,
    action: str,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """The entry of a token's lifecycle change (`created`, `revoked`, …), named by the token's name."""
    return change_entry(by, "token", token_name, action, before=before, after=after)


async def record(records: CatalogRecords, entry_: AuditEntry) -> None:
    """Store one entry on its own: for actions whose only write is elsewhere (run-now, stop)."""
    await records.audit.add([entry_])


async def find(
    records: CatalogRecords, query: AuditQuery, *, offset: int, limit: int
) -> tuple[list[AuditEntry], int]:
    return await records.audit.page(query, offset=offset, limit=limit)


async def with_entry(
    repo: CatalogRepository, write: Callable[[UnitOfWork], Awaitable[T]], entry_: AuditEntry
) -> T:
    """`write` and its entry in one transaction: a refused write (it raises) stores no entry."""

    async def work(unit: UnitOfWork) -> T:
        result = await write(unit)
        await unit.audit.add([entry_])
        return result

    return await repo.atomically(work)
