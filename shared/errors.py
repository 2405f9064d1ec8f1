"""The one error hierarchy of Connect.

Adapters translate library errors into these at their boundary, so services and subscribers decide
on retry or dead-letter by type alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


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


@dataclass(frozen=True)
class FieldProblem:
    """One broken rule of a request: the field it is about and what is wrong."""

    field: str | None
    message: str


class ValidationFailed(PermanentError):
    """User input broke a rule; `field` names the offending field, `problems` every one found (the first
    is `field` and `message`)."""

    code = "validation_failed"

    def __init__(self, message: str, field: str | None = None, problems: Sequence[FieldProblem] = ()) -> None:
        super().__init__(message, field)
        self.problems = tuple(problems) or (FieldProblem(field, message),)

    @classmethod
    def of(cls, problems: Sequence[FieldProblem]) -> ValidationFailed:
        first = problems[0]
        return cls(first.message, first.field, problems)


class Problems:
    """Collects the problems of one request, to report all of them in one ValidationFailed."""

    def __init__(self) -> None:
        self.found: list[FieldProblem] = []

    def add(self, message: str, field: str | None) -> None:
        problem = FieldProblem(field, message)
        if problem not in self.found:  # two checks of one value may find the same fault
            self.found.append(problem)

    def check(self, run: Callable[[], object]) -> None:
        """Run one check, keeping every problem it raises instead of stopping at it."""
        try:
            run()
        except ValidationFailed as exc:
            for problem in exc.problems:
                self.add(problem.message, problem.field)

    def raise_any(self) -> None:
        if self.found:
            raise ValidationFailed.of(self.found)


class NotFound(PermanentError):
    code = "not_found"


class Conflict(PermanentError):
    """The request contradicts the current state (duplicate name, run while running, stale version)."""

    code = "conflict"


class Unauthorized(PermanentError):
    code = "unauthorized"


class Forbidden(PermanentError):
    code = "forbidden"
