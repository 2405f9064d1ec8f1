"""The one error hierarchy of Connect.

Adapters translate library errors into these at their boundary, so services and subscribers decide
on retry or dead-letter by type alone.
"""

from __future__ import annotations


class ConnectError(Exception):
    """Base of every error Connect raises on purpose."""

    code: str = "connect_error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class RetryableError(ConnectError):
    """A transient failure (network, broker, database): the same work may succeed later."""

    code = "retryable"


class PermanentError(ConnectError):
    """A failure that repeating cannot fix (bad input, missing file, refused credentials)."""

    code = "permanent"


class ValidationFailed(PermanentError):
    """User input broke a rule; `field` names the offending field."""

    code = "validation_failed"


class NotFound(PermanentError):
    code = "not_found"


class Conflict(PermanentError):
    """The request contradicts the current state (duplicate name, run while running, stale version)."""

    code = "conflict"


class Unauthorized(PermanentError):
    code = "unauthorized"


class Forbidden(PermanentError):
    code = "forbidden"
