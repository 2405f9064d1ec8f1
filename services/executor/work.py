"""The work of a run attempt (`RunWork`, ports.py), built by the type of its job's spec: one builder a
kind of job, so that a new job type adds a builder where the service wires them, not a branch."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from services.executor.active import ActiveRun
from services.executor.domain import Tally
from services.executor.ports import Claim, RunWork, WorkOutcome
from services.executor.reporting import RunReporter
from shared.errors import PermanentError

Spec = TypeVar("Spec")
Builder = Callable[[Spec, "Attempt"], Awaitable[RunWork]]


@dataclass(frozen=True)
class Attempt:
    """One attempt of a claimed run, as its work is built for it."""

    active: ActiveRun
    claim: Claim
    reporter: RunReporter
    number: int  # of this claim's attempts, from 1


class WorkFactory:
    def __init__(self) -> None:
        # Typed where a builder is added: it takes the spec type it is keyed by.
        self._builders: dict[type[Any], Builder[Any]] = {}

    def add(self, spec_type: type[Spec], build: Builder[Spec]) -> None:
        self._builders[spec_type] = build

    async def build(self, spec: object, attempt: Attempt) -> RunWork:
        build = self._builders.get(type(spec))
        if build is None:
            raise PermanentError(f"the executor does no work for a {type(spec).__name__}")
        return await build(spec, attempt)


class RefusedWork:
    """Work that fails at once with `reason` (a `RunWork`): the run ends failed and reported, as any failure."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.tally = Tally()
        self.bytes_total: int | None = None

    async def run(self) -> WorkOutcome:
        raise PermanentError(self.reason)
