"""Request dependencies: the catalog service and the authenticated principal with a role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.catalog.domain import Role, require_role
from services.catalog.service import CatalogService, Principal
from shared.errors import Unauthorized

bearer = HTTPBearer(auto_error=False, description="An API token (`connect admin create-token`).")


def get_service(request: Request) -> CatalogService:
    service: CatalogService = request.app.state.catalog
    return service


Service = Annotated[CatalogService, Depends(get_service)]


def role(needed: Role) -> Callable[..., Awaitable[Principal]]:
    async def authenticated(
        service: Service,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthorized("a bearer token is required")
        principal = await service.authenticate(credentials.credentials)
        require_role(principal.role, needed)
        return principal

    return authenticated


Viewer = Annotated[Principal, Depends(role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(role(Role.ADMIN))]
