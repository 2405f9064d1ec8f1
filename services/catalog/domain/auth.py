"""Who may do what: roles and API tokens."""

from __future__ import annotations

import hashlib
from enum import IntEnum

from shared.errors import Forbidden, ValidationFailed


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


def require_role(actual: Role, needed: Role) -> None:
    if actual < needed:
        raise Forbidden(f"this action needs the {needed.name.lower()} role")


def hash_token(token: str) -> str:
    """Tokens are stored hashed; a high-entropy random token needs no slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()
