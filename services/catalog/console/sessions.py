"""Console sessions: an opaque random id in an HttpOnly cookie, stored server-side (hashed).

Signing in with an API token creates a session bound to that token: revoking the token ends its
sessions, and the token's role applies. Every session has its own CSRF token, which the console sends
in `X-CSRF-Token` on each request that changes something (bearer-token requests need none).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from pymongo.errors import PyMongoError

from services.catalog.domain import Role, hash_token
from services.catalog.service import Principal
from shared.collections import CatalogCollections
from shared.errors import Forbidden, Unauthorized
from shared.mongo import MongoClient, database_error

logger = logging.getLogger(__name__)

SESSION_COOKIE = "connect_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    csrf: str
    expires_at: datetime


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions:
    """The catalog's `console_sessions` collection (expired sessions are removed by a TTL index)."""

    def __init__(self, client: MongoClient, db_name: str, lifetime: timedelta = SESSION_LIFETIME) -> None:
        self.sessions = client[db_name][CatalogCollections.CONSOLE_SESSIONS]
        self.tokens = client[db_name][CatalogCollections.TOKENS]
        self.lifetime = lifetime

    async def ensure_indexes(self) -> None:
        try:
            await self.sessions.create_index("expires_at", expireAfterSeconds=0)
        except PyMongoError as exc:  # a server without TTL indexes: expiry is still checked on read
            logger.warning("no TTL index on console sessions", extra={"error": str(exc)})

    async def create(self, token: str, principal: Principal) -> tuple[str, ConsoleSession]:
        """A new session for a valid token; returns the cookie value (shown only here) and the session."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        session = ConsoleSession(principal, secrets.token_urlsafe(32), now + self.lifetime)
        document = {
            "_id": _digest(session_id),
            "token_hash": hash_token(token),
            "csrf": session.csrf,
            "created_at": now,
            "expires_at": session.expires_at,
        }
        await self._call(self.sessions.insert_one(document))
        return session_id, session

    async def get(self, session_id: str) -> ConsoleSession | None:
        """The live session with this id, with the principal of its (still valid) token."""
        if not session_id or len(session_id) > 200:
            return None
        doc = await self._call(self.sessions.find_one({"_id": _digest(session_id)}))
        if doc is None:
            return None
        expires_at = _aware(doc["expires_at"])
        if expires_at <= datetime.now(UTC):
            return None
        token = await self._call(self.tokens.find_one({"_id": doc["token_hash"]}))
        if token is None or token.get("revoked_at") is not None:  # revoked: its sessions end with it
            return None
        token_expiry = token.get("expires_at")
        if token_expiry is not None and _aware(token_expiry) <= datetime.now(UTC):
            return None
        principal = Principal(name=token["name"], role=Role.parse(token["role"]))
        return ConsoleSession(principal, str(doc["csrf"]), expires_at)

    async def delete(self, session_id: str) -> None:
        await self._call(self.sessions.delete_one({"_id": _digest(session_id)}))

    @staticmethod
    async def _call(operation: Any) -> Any:
        try:
            return await operation
        except PyMongoError as exc:
            raise database_error("reading or writing a console session", exc) from exc


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def sessions_of(request: Request) -> ConsoleSessions | None:
    store: ConsoleSessions | None = getattr(request.app.state, "console_sessions", None)
    return store


async def session_principal(request: Request) -> Principal | None:
    """The principal of the request's console session cookie, or None without a cookie.

    Raises 401 for an unknown or expired session, and 403 when a request that changes something does
    not carry the session's CSRF token in `X-CSRF-Token`.
    """
    session_id = request.cookies.get(SESSION_COOKIE)
    store = sessions_of(request)
    if not session_id or store is None:
        return None
    session = await store.get(session_id)
    if session is None:
        raise Unauthorized("the console session has ended; sign in again")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise Forbidden(f"a request made with the console's session needs the {CSRF_HEADER} header")
    return session.principal
