"""What the executor's use cases need from the outside world."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from services.executor.domain import Tally
from services.executor.domain.outcomes import Ending
from shared.catalog_records import ConnectionRecord, PgpKeyRecord, TableRecord
from shared.contracts import Envelope, RunRequested


@dataclass(frozen=True)
class Claim:
    run_id: str
    attempt: int
    started_at: datetime  # the first attempt's start: a taken-over run keeps it
    checkpoint: dict[str, Any] | None = None
    log_seq: int = 0  # the last log number handed out before this attempt: it numbers after it
    table: str | None = None  # the collection whose writer lock the claim took with it
    continued: bool = False  # `table` was this run's already (a take-over): nobody wrote it since


@dataclass(frozen=True)
class Renewal:
    held: bool  # the lease is still this executor's
    writing: str | None = None  # the collection whose writer lock it still carries


class LeaseStore(Protocol):
    async def claim(self, request: RunRequested, owner: str) -> bool:
        """Take the run (to wait for a slot) unless another live executor holds it or it is finished."""
        ...

    async def claim_and_start(
        self, request: RunRequested, owner: str, table: str | None = None
    ) -> Claim | None:
        """`claim` and `start` in one write (a slot is free); None where `claim` is False. With `table`,
        the write takes that collection's writer lock too unless another run holds it."""
        ...

    async def start(self, run_id: str, owner: str, table: str | None = None) -> Claim | None:
        """The claimed run got a slot: a new attempt; None when another executor took it meanwhile."""
        ...

    async def steal_waiting(self, owner: str, limit: int) -> list[RunRequested]:
        """Take over runs that other executors claimed but hold waiting for a slot."""
        ...

    async def renew(self, run_id: str, owner: str) -> Renewal:
        """Extend the lease and the table writer lock it carries."""
        ...

    async def release(self, run_id: str, owner: str, log_seq: int) -> bool:
        """Let another executor take the run over now, numbering its log after `log_seq`."""
        ...

    async def record_log_seq(self, run_id: str, owner: str, log_seq: int) -> bool:
        """Log lines up to `log_seq` may be sent; False when `owner` lost the lease."""
        ...

    async def finish(self, run_id: str, owner: str, finished_message: str) -> bool:
        """Store the result and end the run's table writer lock; False when `owner` lost the lease."""
        ...

    async def save_checkpoint(self, run_id: str, owner: str, checkpoint: dict[str, Any]) -> None: ...

    async def load_checkpoint(self, run_id: str) -> dict[str, Any] | None: ...

    async def mark_reported(self, run_ids: Sequence[str]) -> None: ...

    async def expired(self, limit: int) -> list[RunRequested]: ...

    async def unreported(self, older_than_seconds: float) -> list[str]: ...


@dataclass(frozen=True)
class TableHold:
    """The answer to asking for a table's writer lock."""

    acquired: bool
    holder: str | None = None  # the run writing the table when not acquired
    continued: bool = False  # acquired and this run held it already (nobody wrote in between)


class TableWriters(Protocol):
    """One writing run per table at a time (see docs/executor.md, "Concurrent runs on one table").

    The lock is a field of the run's lease: renewed with it, handed over with it (`LeaseStore.release`),
    ended by the write that stores the result (`LeaseStore.finish`)."""

    async def acquire(self, table: str, run_id: str, owner: str) -> TableHold:
        """Hold `table` for `run_id` unless another run holds it and has not let its lease expire."""
        ...


class CatalogReader(Protocol):
    async def connection(self, connection_id: int) -> ConnectionRecord: ...

    async def table(self, name: str) -> TableRecord: ...

    async def key(self, key_id: int) -> PgpKeyRecord:
        """An OpenPGP key (read every time: a key deleted or replaced is seen at the next run)."""
        ...


class EventPublisher(Protocol):
    async def publish(self, message: Envelope) -> None: ...


class WorkOutcome(Protocol):
    """How a run's work ended when it ran to its end (`domain/outcomes.py`)."""

    @property
    def tally(self) -> Tally: ...

    def ending(self) -> Ending:
        """The status of the run, its error when partial for more than rejected records, its rejects file."""
        ...

    def records_processed(self) -> Mapping[str, int]:
        """Records to count now in `records_processed_total`, by outcome (exported, rejected …)."""
        ...


class RunWork(Protocol):
    """One attempt of a run's work — an import or an export — as the service drives it: it runs it,
    tells its progress meanwhile, and reports what it counted when it fails or stops."""

    @property
    def tally(self) -> Tally:
        """The counts so far."""
        ...

    @property
    def bytes_total(self) -> int | None:
        """The size of what the work reads, once known (progress events show how far it is)."""
        ...

    async def run(self) -> WorkOutcome: ...
