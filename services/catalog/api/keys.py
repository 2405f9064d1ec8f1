"""Routes of OpenPGP keys (admin adds and deletes them; everyone signed in reads them, without secrets)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request

from services.catalog.api.deps import Admin, Viewer
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.key_schemas import KeyCreate, KeyView
from services.catalog.keys import PgpKeys
from services.catalog.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["keys"])

KeyId = Annotated[int, Path(ge=1, le=2**62)]


def get_keys(request: Request) -> PgpKeys:
    keys: PgpKeys = request.app.state.keys
    return keys


Keys = Annotated[PgpKeys, Depends(get_keys)]


@router.post("/keys", status_code=201)
async def create_key(body: Annotated[KeyCreate, Body()], keys: Keys, by: Admin) -> KeyView:
    """Add a partner's public key or Connect's own private key (armoured, or binary in base64). A private
    key must open with the passphrase given; it is stored encrypted and never returned. Expired and
    revoked keys are refused."""
    return await keys.create(body, by.name)


@router.get("/keys/{key_id}")
async def get_key(key_id: KeyId, keys: Keys, _: Viewer) -> KeyView:
    return await keys.get(key_id)


@router.get("/keys")
async def list_keys(
    keys: Keys, _: Viewer, paging: Paging, offset: Offset = 0, limit: Limit = 50
) -> Page[KeyView]:
    items, total = await keys.page(offset=offset, limit=limit)
    return paging.page(items, total, offset, limit)


@router.delete("/keys/{key_id}", status_code=204)
async def delete_key(key_id: KeyId, keys: Keys, by: Admin) -> None:
    await keys.delete(key_id, by.name)
