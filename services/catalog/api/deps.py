"""Request dependencies: the catalog service and the authenticated principal with a role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.catalog.api.clients import client_of
from services.catalog.api.idempotency import claim_key
from services.catalog.console.sessions import session_principal
from services.catalog.domain import Role, require_role
from services.catalog.service import CatalogService, Principal
from shared.errors import Unauthorized

bearer = HTTPBearer(auto_error=False, description="An API token (`connect admin tokens create`).")


def get_service(request: Request) -> CatalogService:
    service: CatalogService = request.app.state.catalog
    return service


Service = Annotated[CatalogService, Depends(get_service)]


@dataclass(frozen=True)
class RequiredRole:
    """The dependency that authenticates a request and checks its role; the OpenAPI document reads
    `needed` to tell which operations answer 401, 403 and 429."""

    needed: Role

    async def __call__(
        self,
        request: Request,
        service: Service,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is not None and credentials.scheme.lower() == "bearer":
            principal = await service.authenticate(credentials.credentials, client_of(request))
        elif (from_console := await session_principal(request)) is not None:
            principal = from_console  # the console's session cookie (CSRF-checked when it changes things)
        else:
            raise Unauthorized("a bearer token is required")
        require_role(principal.role, self.needed)
        await claim_key(request, principal)  # the caller is known: an Idempotency-Key is claimed now
        return principal


Viewer = Annotated[Principal, Depends(RequiredRole(Role.VIEWER))]
Operator = Annotated[Principal, Depends(RequiredRole(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(RequiredRole(Role.ADMIN))]
