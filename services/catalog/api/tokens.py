"""Routes of API tokens (admin): create (the token is shown once), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from services.catalog.api.deps import Admin, Service
from services.catalog.api.paging import Limit, Offset, Paging
from services.catalog.domain import Role, StoredToken
from services.catalog.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["tokens"])

TokenId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


class TokenCreate(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=100, description="Who the token is for (shown as 'By').")
    role: Literal["viewer", "operator", "admin"] = "viewer"
    expires_at: AwareDatetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def one_expiry(self) -> TokenCreate:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        return self

    def expiry(self) -> datetime | None:
        if self.expires_in_days is not None:
            return datetime.now(UTC) + timedelta(days=self.expires_in_days)
        return self.expires_at


class TokenView(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute per token.")
    revoked: bool
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: StoredToken) -> TokenView:
        return cls(
            id=token.token_id, name=token.name, role=token.role.name.lower(), created_at=token.created_at,
            expires_at=token.expires_at, last_used_at=token.last_used_at, revoked=token.revoked_at is not None,
            revoked_at=token.revoked_at,
        )  # fmt: skip


class TokenCreated(TokenView):
    token: str = Field(description="The token itself: shown only in this answer, stored hashed.")


@router.post("/tokens", status_code=201)
async def create_token(body: Annotated[TokenCreate, Body()], service: Service, by: Admin) -> TokenCreated:
    token, stored = await service.create_token(body.name, Role.parse(body.role), body.expiry(), by.name)
    return TokenCreated(**TokenView.of(stored).model_dump(), token=token)


@router.get("/tokens")
async def list_tokens(
    service: Service, _: Admin, paging: Paging, offset: Offset = 0, limit: Limit = 50
) -> Page[TokenView]:
    items, total = await service.list_tokens(offset=offset, limit=limit)
    return paging.page([TokenView.of(t) for t in items], total, offset, limit)


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: TokenId, service: Service, by: Admin) -> None:
    """Revoke a token: it is refused (401) from now on and the console sessions made with it end."""
    await service.revoke_token(token_id, by.name)
