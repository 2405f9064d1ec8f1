"""`Idempotency-Key` on the POSTs that create or run (issue #19), wired without touching a route.

`IdempotencyMiddleware` sees a POST to a covered path carrying the header: it checks the key, reads the body for the
request's fingerprint and leaves both in the scope. Once the route's role dependency knows the caller it
calls `claim_key`: on a covered route (`COVERED`) the key is claimed before the route runs, or the first
answer is replayed, or the request refused. The middleware then keeps the route's answer for the key
before sending it. Without the header nothing of this runs (not one database operation).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.catalog.api.errors import error_response
from services.catalog.domain.idempotency import (
    HEADER,
    MAX_KEY_LENGTH,
    REPLAYED_HEADER,
    Answer,
    Attempt,
    fingerprint,
    parse_key,
)
from services.catalog.errors import InvalidIdempotencyKey, RequestInProgress
from services.catalog.idempotency import IdempotentRequests
from services.catalog.service import Principal
from shared.errors import ConnectError

logger = logging.getLogger(__name__)

# The POSTs that create or run (route paths); the header is ignored on the others (stop, activate, delete,
# test: doing them twice changes nothing more than once, or they are checked against the current state).
COVERED = frozenset({
    "/api/v1/jobs", "/api/v1/jobs/run", "/api/v1/jobs/{job_id}/run", "/api/v1/jobs/{job_id}/dry-run",
    "/api/v1/jobs/{job_id}/copy", "/api/v1/groups", "/api/v1/groups/{group_id}/run", "/api/v1/tables",
    "/api/v1/connections", "/api/v1/notification-channels", "/api/v1/keys", "/api/v1/tokens",
})  # fmt: skip
# The same paths as requests see them, for the middleware (before routing); `claim_key` checks the route.
COVERED_PATHS = tuple(
    re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", path) + "$") for path in sorted(COVERED)
)
SCOPE_KEY = "connect.idempotency"
HEADER_NAME = HEADER.lower().encode()


@dataclass
class KeyedRequest:
    """A POST with an `Idempotency-Key`: its key, its fingerprint and, once claimed, its attempt."""

    key: str
    fingerprint: str
    attempt: Attempt | None = None


class Replay(Exception):  # not an error: the answer to give again
    def __init__(self, answer: Answer) -> None:
        super().__init__("replay")
        self.answer = answer


async def claim_key(request: Request, caller: Principal) -> None:
    """Claim the request's key for `caller` on a covered route (raises `Replay` or a refusal); else nothing."""
    keyed: KeyedRequest | None = request.scope.get(SCOPE_KEY)
    route = request.scope.get("route")
    if keyed is None or keyed.attempt is not None or getattr(route, "path", None) not in COVERED:
        return
    requests: IdempotentRequests = request.app.state.idempotency
    outcome = await requests.begin(caller.name, keyed.key, keyed.fingerprint)
    if isinstance(outcome, Answer):
        raise Replay(outcome)
    keyed.attempt = outcome


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, requests: IdempotentRequests) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        values = _key_values(scope)
        if not values:
            await self.app(scope, receive, send)
            return
        try:
            if len(values) > 1:
                raise InvalidIdempotencyKey(f"give one {HEADER} header, not {len(values)}", field=HEADER)
            key = parse_key(values[0].decode("latin-1"))
        except InvalidIdempotencyKey as exc:
            await error_response(422, exc.code, exc.message, exc.field)(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left mid-body: nothing to run (nor to hand on as if complete)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        keyed = KeyedRequest(key, fingerprint(scope["method"], scope["path"], query, body))
        scope[SCOPE_KEY] = keyed
        recorder = Recorder(send, keyed)
        try:
            await self.app(scope, _replaying(body, receive), recorder)
        except Exception:
            if keyed.attempt is not None:
                await self._keep(keyed.attempt, None)
            raise
        if keyed.attempt is not None:
            await self._keep(keyed.attempt, recorder.answer())
        await recorder.flush()

    async def _keep(self, attempt: Attempt, answer: Answer | None) -> None:
        """Keep the answer for the key, or (none: the request failed unexpectedly) release the key."""
        try:
            if answer is None:
                await self.requests.abandon(attempt)
            else:
                await self.requests.finish(attempt, answer)
        except ConnectError as exc:  # the answer still goes out; the key then answers "outcome unknown"
            logger.warning("idempotent answer not kept", extra={"error": exc.message})


class Recorder:
    """The `send` of a keyed request: passes the answer through, or holds it until it is kept (claimed)."""

    def __init__(self, send: Send, keyed: KeyedRequest) -> None:
        self.send = send
        self.keyed = keyed
        self.held: list[Message] | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.keyed.attempt is not None:
            self.held = []
        if self.held is None:
            await self.send(message)
        else:
            self.held.append(message)

    def answer(self) -> Answer | None:
        if not self.held:
            return None
        start, bodies = self.held[0], self.held[1:]
        headers = dict(start.get("headers", []))
        content_type = headers.get(b"content-type")
        body = b"".join(m.get("body", b"") for m in bodies if m["type"] == "http.response.body")
        return Answer(start["status"], None if content_type is None else content_type.decode("latin-1"), body)

    async def flush(self) -> None:
        for message in self.held or ():
            await self.send(message)


def _key_values(scope: Scope) -> list[bytes]:
    if scope["type"] != "http" or scope["method"] != "POST":
        return []
    if not any(pattern.match(scope["path"]) for pattern in COVERED_PATHS):
        return []  # ignored, even when invalid
    return [value for name, value in scope.get("headers", []) if name == HEADER_NAME]


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected before its end."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body once more for the app (it was read for the fingerprint), then the client's own messages."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def install_idempotency(app: FastAPI, requests: IdempotentRequests) -> None:
    """The middleware, the answers of a replay and of a request in progress, and the OpenAPI documentation."""
    app.state.idempotency = requests
    app.add_middleware(IdempotencyMiddleware, requests=requests)

    async def replayed(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Replay)
        answer = exc.answer
        headers = {REPLAYED_HEADER: "true"}
        if answer.content_type is not None:
            headers["content-type"] = answer.content_type
        return Response(content=answer.body, status_code=answer.status, headers=headers)

    async def in_progress(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestInProgress)
        response = error_response(409, exc.code, exc.message, exc.field)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    app.add_exception_handler(Replay, replayed)
    app.add_exception_handler(RequestInProgress, in_progress)
    document_idempotency(app)


HEADER_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Optional: a key of the caller's own (1-255 printable ASCII characters; e.g. a UUID) making a retry "
        "safe. The same key with the same request within 24 h answers the first answer again (header "
        f"`{REPLAYED_HEADER}: true`) and does nothing twice; with another request: 422 "
        "`idempotency_key_reused`; while the first is in flight: 409 `idempotency_request_in_progress` with "
        "Retry-After; when the first never answered: 409 `idempotency_outcome_unknown`. Keys are per caller."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
}
ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
REFUSALS = {  # added where an operation does not list them already
    "409": "Conflict; or the first request with this Idempotency-Key is in flight or never answered",
    "422": "Invalid input; or an Idempotency-Key that is invalid or was used with another request",
}
REPLAYED_RESPONSE_HEADER = {
    "description": "`true` when this is the first answer given again for the request's Idempotency-Key.",
    "schema": {"type": "string", "enum": ["true"]},
}


def document_idempotency(app: FastAPI) -> None:
    """Add the optional header, and the replay's response header, to each covered operation's OpenAPI."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()  # FastAPI's, built once and cached: the additions are made to it once
        for path in COVERED:
            operation = document["paths"].get(path, {}).get("post")
            if operation is None or HEADER_PARAMETER in operation.get("parameters", []):
                continue
            operation.setdefault("parameters", []).append(HEADER_PARAMETER)
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if status.startswith("2"):
                    response.setdefault("headers", {})[REPLAYED_HEADER] = REPLAYED_RESPONSE_HEADER
            for status, description in REFUSALS.items():
                responses.setdefault(status, {"description": description, "content": ERROR_CONTENT})
        return document

    app.openapi = openapi  # type: ignore[method-assign]
