"""Who may do what: roles and API tokens."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
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

    def put(self, token_hash: str, value: T, now: float) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))
        self._entries[token_hash] = (now + self.ttl, value)
