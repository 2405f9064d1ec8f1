"""Routes of the web console: the page itself, sign-in and sign-out; assets are served from ./static.

The console is plain HTML, CSS and JavaScript served by the catalog (no CDN, no build step). It calls
the same `/api/v1` as everyone else, authenticated by its session cookie instead of a bearer token.
"""

from __future__ import annotations

import hmac
import html
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from services.catalog.api.clients import client_of
from services.catalog.console.sessions import (
    CSRF_HEADER,
    SESSION_COOKIE,
    ConsoleSessions,
    sessions_of,
)
from services.catalog.service import CatalogService
from shared.errors import Forbidden, Unauthorized, ValidationFailed
from shared.mongo import MongoClient

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/console/static"

# Nothing from outside the deployment: every resource comes from the catalog itself.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


class SignIn(BaseModel):
    token: str = Field(min_length=1, max_length=500)


def _page(name: str, **values: str) -> HTMLResponse:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
    return HTMLResponse(text, headers=SECURITY_HEADERS)


def _secure(request: Request) -> bool:
    """Secure cookies when the console is reached over https (directly or behind a TLS proxy)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _same_origin(request: Request) -> bool:
    """Browsers send Origin on every cross-origin POST; clients without one are not browsers."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin.split("://", 1)[-1] == request.headers.get("host", "")


@router.get("/")
async def console_page(request: Request) -> Response:
    store = sessions_of(request)
    session_id = request.cookies.get(SESSION_COOKIE, "")
    session = await store.get(session_id) if store and session_id else None
    if session is None:
        return RedirectResponse("/sign-in", status_code=303, headers={"Cache-Control": "no-store"})
    return _page(
        "index.html",
        csrf=session.csrf,
        user=session.principal.name,
        role=session.principal.role.name.lower(),
    )


@router.get("/sign-in")
async def sign_in_page() -> Response:
    return _page("sign-in.html")


@router.post("/console/session")
async def sign_in(request: Request, body: Annotated[SignIn, Body()]) -> Response:
    """Exchange an API token for a console session (JSON only, same origin only: no login CSRF)."""
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ValidationFailed("send the token as JSON", field="token")
    if not _same_origin(request):
        raise Forbidden("sign-in is only accepted from the console's own origin")
    catalog: CatalogService = request.app.state.catalog
    store = sessions_of(request)
    if store is None:
        raise Unauthorized("the console is not enabled")
    try:
        principal = await catalog.authenticate(body.token, client_of(request))
    except Unauthorized:
        raise Unauthorized("this token is not valid (or was revoked)", field="token") from None
    session_id, session = await store.create(body.token, principal)
    response = JSONResponse(
        {"name": principal.name, "role": principal.role.name.lower(), "csrf": session.csrf},
        headers={"Cache-Control": "no-store"},
    )
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(store.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/console/session")
async def current_session(request: Request) -> Response:
    """Who is signed in, and the session's CSRF token (readable by the console's own origin only)."""
    store = sessions_of(request)
    session_id = request.cookies.get(SESSION_COOKIE, "")
    session = await store.get(session_id) if store and session_id else None
    if session is None:
        raise Unauthorized("not signed in")
    body = {"name": session.principal.name, "role": session.principal.role.name.lower(), "csrf": session.csrf}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.delete("/console/session", status_code=204)
async def sign_out(request: Request) -> Response:
    """Sign out: the session is deleted server-side and the cookie cleared (CSRF-protected)."""
    store = sessions_of(request)
    session_id = request.cookies.get(SESSION_COOKIE, "")
    session = await store.get(session_id) if store and session_id else None
    if store is not None and session is not None:
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()):
            raise Forbidden(f"sign-out needs the {CSRF_HEADER} header")
        await store.delete(session_id)
    response = Response(status_code=204)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


def install_console(app: FastAPI, client: MongoClient, db_name: str) -> ConsoleSessions:
    """Serve the console at `/` and its assets at /console/static; returns the session store."""
    sessions = ConsoleSessions(client, db_name)
    app.state.console_sessions = sessions
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="console-static")
    return sessions
