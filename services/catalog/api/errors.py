"""Every error leaves the API as `{"error": {"code", "message", "field"}, "errors": [...]}`: `error` is the
first problem (what clients read before #19), `errors` lists every problem found, each naming its field."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.catalog.errors import RateLimited
from shared.errors import (
    Conflict,
    ConnectError,
    FieldProblem,
    Forbidden,
    NotFound,
    PermanentError,
    RetryableError,
    Unauthorized,
    ValidationFailed,
)
from shared.mongo import database_error

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[ConnectError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (ValidationFailed, 422),
    (RateLimited, 429),
    (PermanentError, 400),
    (RetryableError, 503),
)


def error_response(
    status: int, code: str, message: str, field: str | None = None, problems: Sequence[FieldProblem] = ()
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    listed = problems or (FieldProblem(field, message),)
    body = {
        "error": {"code": code, "message": message, "field": field},
        "errors": [{"code": code, "message": p.message, "field": p.field} for p in listed],
    }
    return JSONResponse(status_code=status, content=body, headers=headers)


# Pydantic puts the chosen variant's tag in the location of errors inside a discriminated union.
UNION_FIELDS = frozenset({"spec", "source", "target", "destination", "schedule", "rule"})
UNION_TAGS = frozenset({
    "import", "export", "sftp", "rest", "adobe_analytics", "list", "profile_extension", "custom",
    "one_time", "recurring", "on_demand", "on_event", "cron", "every", "daily", "weekly", "monthly",
    "smtp", "webhook",
})  # fmt: skip
LOCATIONS = frozenset({"body", "query", "path", "header"})


def field_path(location: tuple[object, ...] | list[object]) -> str:
    """`spec.target.match_columns` from pydantic's error location, without union tags."""
    parts: list[str] = []
    previous: str | None = None
    for index, part in enumerate(location):
        text = str(part)
        if index == 0 and text in LOCATIONS:
            continue
        union_here = (
            previous is None or previous in UNION_FIELDS
        )  # the body itself is a union for connections
        if not (union_here and text in UNION_TAGS):
            parts.append(f"[{text}]" if isinstance(part, int) else text)
        previous = text
    return ".".join(parts).replace(".[", "[")


def _problem(error: Mapping[str, Any]) -> FieldProblem:
    """One pydantic error as a problem whose message starts with its field (`spec.name: …`)."""
    field = field_path(error.get("loc", ())) or None
    return FieldProblem(field, f"{field}: {error.get('msg')}" if field else str(error.get("msg")))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConnectError)
    async def connect_error(_: Request, exc: ConnectError) -> JSONResponse:
        status = next((s for cls, s in STATUS_BY_ERROR if isinstance(exc, cls)), 500)
        problems = exc.problems if isinstance(exc, ValidationFailed) else ()
        response = error_response(status, exc.code, exc.message, exc.field, problems)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(error) for error in exc.errors()]
        first = problems[0]
        return error_response(422, "validation_failed", first.message, first.field, problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "internal error; see the catalog's log")

    @app.exception_handler(PyMongoError)
    async def database_unavailable(request: Request, exc: PyMongoError) -> JSONResponse:
        """A read the database did not answer is a 503, as a write is (`database_errors`)."""
        error = database_error("answering the request", exc)
        if isinstance(error, RetryableError):
            return await connect_error(request, error)
        return await unexpected(request, exc)
