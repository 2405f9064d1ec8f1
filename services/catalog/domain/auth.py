"""Who may do what: roles and API tokens."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Generic, TypeVar

from shared.errors import Forbidden, ValidationFailed

T = TypeVar("T")


class Role(IntEnum):
    """viewer < operator < admin: each role may do what the ones below it may."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValidationFailed(f"unknown role '{name}' (viewer, operator, admin)", field="role") from None


@dataclass(frozen=True)
class StoredToken:
    """An API token as the catalog keeps it: its hash (`hash_token`), never the token itself."""

    token_hash: str
    name: str
    role: Role
    created_at: datetime
    token_id: str = ""  # the public id the API lists and revokes by (the hash is never shown)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def refusal(self, now: datetime) -> str | None:
        """Why this token may not be used at `now`, or None when it may."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return None


# last_used_at is written at most once a minute per token, so a busy token costs few database writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def last_used_is_stale(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


def require_role(actual: Role, needed: Role) -> None:
    if actual < needed:
        raise Forbidden(f"this action needs the {needed.name.lower()} role")


def hash_token(token: str) -> str:
    """Tokens are stored hashed; a high-entropy random token needs no slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache(Generic[T]):
    """Tokens found valid recently, so a burst of requests with one token costs one lookup.

    Only valid tokens are kept (a token issued a moment ago is never refused), each for `ttl` seconds:
    a revoked token is refused at most that long after its record is deleted. `ttl` 0 keeps nothing.
    """

    def __init__(self, ttl: float, *, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, token_hash: str, now: float) -> T | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        expires, value = entry
        if now >= expires:
            del self._entries[token_hash]
            return None
        return value

    def drop(self, token_hash: str) -> None:
        self._entries.pop(token_hash, None)

    def put(self, token_hash: str, value: T, now: float) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        self._entries[token_hash] = (now + self.ttl, value)


class FailureLimiter:
    """Counts authentication failures per client in a sliding window; `limit` of them block that client
    until the oldest leaves the window. In memory: each catalog replica counts on its own."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until `client` may try again, or None when it is not blocked."""
        failures = self._recent(client, now)
        if len(failures) < self.limit:
            return None
        return failures[-self.limit] + self.window - now

    def record(self, client: str, now: float) -> None:
        self._recent(client, now)
        failures = self._failures.setdefault(client, deque())
        failures.append(now)
        while len(failures) > self.limit:  # older ones no longer matter for the block
            failures.popleft()
        if len(self._failures) > 100_000:  # many clients: forget the quietest (bounded memory)
            self._failures.pop(next(iter(self._failures)))
