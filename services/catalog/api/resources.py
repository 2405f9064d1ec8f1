"""Routes of connections and tables (admin defines them; everyone signed in reads them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from services.catalog.api.deps import Admin, Service, Viewer
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.schemas import (
    ConnectionCreate,
    ConnectionTest,
    ConnectionView,
    HostKeyRequest,
    HostKeyView,
    Page,
    TableCreate,
    TableView,
)

router = APIRouter(prefix="/api/v1")

ConnectionId = Annotated[int, Path(ge=1, le=2**62)]
TableName = Annotated[str, Path(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]


@router.post("/connections", status_code=201, tags=["connections"])
async def create_connection(
    body: Annotated[ConnectionCreate, Body()], service: Service, by: Admin
) -> ConnectionView:
    """Add an SFTP or REST connection; passwords, private keys and tokens are stored encrypted, never returned."""
    return await service.create_connection(body, by)


@router.post("/connections/host-key", tags=["connections"])
async def fetch_host_key(body: HostKeyRequest, service: Service, _: Admin) -> HostKeyView:
    """Fetch an SFTP server's host key and fingerprint, to check and pin as the connection's host_key."""
    return await service.fetch_host_key(body)


@router.get("/connections/{connection_id}", tags=["connections"])
async def get_connection(connection_id: ConnectionId, service: Service, _: Viewer) -> ConnectionView:
    return await service.get_connection(connection_id)


@router.post("/connections/{connection_id}/test", tags=["connections"])
async def test_connection(connection_id: ConnectionId, service: Service, _: Admin) -> ConnectionTest:
    """Connect with the stored credentials and the pinned host key, and list the base directory."""
    return await service.test_connection(connection_id)


@router.get("/connections", tags=["connections"])
async def list_connections(
    service: Service, _: Viewer, paging: Paging, offset: Offset = 0, limit: Limit = 50
) -> Page[ConnectionView]:
    items, total = await service.list_connections(offset=offset, limit=limit)
    return paging.page(items, total, offset, limit)


@router.post("/tables", status_code=201, tags=["tables"])
async def create_table(body: TableCreate, service: Service, by: Admin) -> TableView:
    """Define a list, a profile extension table or a custom table; its collection and unique indexes are created."""
    return await service.create_table(body, by)


@router.get("/tables/{name}", tags=["tables"])
async def get_table(name: TableName, service: Service, _: Viewer) -> TableView:
    return await service.get_table(name)


@router.get("/tables", tags=["tables"])
async def list_tables(
    service: Service, _: Viewer, paging: Paging, offset: Offset = 0, limit: Limit = 50
) -> Page[TableView]:
    items, total = await service.list_tables(offset=offset, limit=limit)
    return paging.page(items, total, offset, limit)
