"""Routes of notification channels (admin defines them; everyone signed in reads them, without secrets)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request

from services.catalog.api.deps import Admin, Viewer
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.channel_schemas import ChannelCreate, ChannelCreated, ChannelView
from services.catalog.channels import NotificationChannels
from services.catalog.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["notifications"])

ChannelId = Annotated[int, Path(ge=1, le=2**62)]


def get_channels(request: Request) -> NotificationChannels:
    channels: NotificationChannels = request.app.state.channels
    return channels


Channels = Annotated[NotificationChannels, Depends(get_channels)]


@router.post("/notification-channels", status_code=201)
async def create_channel(
    body: Annotated[ChannelCreate, Body()], channels: Channels, by: Admin
) -> ChannelCreated:
    """Add an SMTP or a webhook channel. A webhook's signing secret is generated and shown in this answer only."""
    return await channels.create(body, by.name)


@router.get("/notification-channels/{channel_id}")
async def get_channel(channel_id: ChannelId, channels: Channels, _: Viewer) -> ChannelView:
    return await channels.get(channel_id)


@router.get("/notification-channels")
async def list_channels(
    channels: Channels, _: Viewer, paging: Paging, offset: Offset = 0, limit: Limit = 50
) -> Page[ChannelView]:
    items, total = await channels.page(offset=offset, limit=limit)
    return paging.page(items, total, offset, limit)


@router.delete("/notification-channels/{channel_id}", status_code=204)
async def delete_channel(channel_id: ChannelId, channels: Channels, by: Admin) -> None:
    await channels.delete(channel_id, by.name)
