"""Batches of rows written while the next ones are read and parsed, in bounded numbers, deterministically.

* Up to `max_in_flight` batches are written at once; reading and parsing go on meanwhile.
* A key repeated inside a batch keeps its last occurrence; the earlier ones are folded into it (the
  target counts them: updated, unchanged or rejected with it). A batch holding a key of a batch
  still being written waits for that batch, so the later occurrence always wins.
* A checkpoint (position in the source plus the counts up to it) advances over the longest run of
  completed batches; a taken-over run resumes after it without writing or counting anything twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from services.executor.domain import Rejection
from services.executor.errors import RunStopped
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.targets import Target


@dataclass(frozen=True)
class Checkpoint:
    file: int = -1
    line: int = 0
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    unchanged: int = 0

    def covers(self, item: Item) -> bool:
        return (item.file, item.line) <= (self.file, self.line)

    def to_doc(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Checkpoint | None:
        return cls(**{k: int(v) for k, v in doc.items() if k in cls.__dataclass_fields__}) if doc else None


@dataclass
class _Flight:
    task: asyncio.Task[WriteOutcome]
    keys: frozenset[tuple[Any, ...]]
    end: tuple[int, int]
    outcome: WriteOutcome | None = None


class WritePipeline:
    def __init__(
        self,
        target: Target,
        *,
        batch_size: int,
        max_in_flight: int,
        resume: Checkpoint | None,
        on_written: Callable[[WriteOutcome], Awaitable[None]],
        on_rejected: Callable[[Rejection], None],
        save_checkpoint: Callable[[Checkpoint], Awaitable[None]] | None,
        stop_requested: Callable[[], bool],
        checkpoint_interval: float = 1.0,
    ) -> None:
        self.target = target
        self.batch_size = batch_size
        self.max_in_flight = max(1, max_in_flight)
        self.resume = resume
        self.on_written = on_written
        self.on_rejected = on_rejected
        self.save_checkpoint = save_checkpoint
        self.stop_requested = stop_requested
        self.checkpoint_interval = checkpoint_interval
        self._batch: dict[Any, Item] = {}
        self._unkeyed: list[Item] = []
        self._folded = 0  # earlier occurrences folded into `_batch` items
        self._flights: deque[_Flight] = deque()
        self._done = WriteOutcome()  # of the completed prefix, for checkpoints
        if resume:
            self._done = WriteOutcome(resume.inserted, resume.updated, resume.duplicates, resume.unchanged)
        self._prefix_end = (resume.file, resume.line) if resume else (-1, 0)
        self._last_saved = time.monotonic()
        self.skipped = 0

    async def add(self, item: Item) -> None:
        key = self.target.key(item.row)
        if key is None:
            field_name, reason = self.target.missing_key(item.row)
            self.on_rejected(Rejection(item.line, field_name, reason, item.file, record=item.raw))
            return
        if self.resume is not None and self.resume.covers(item):
            self.skipped += 1  # written (and counted) before the take-over
            return
        if self.target.dedupe:
            if key in self._batch:  # folded into the later occurrence, which is re-inserted in file order
                self._folded += 1  # still a row of the batch: a key repeated without end must not grow it
                earlier = self._batch.pop(key)
                item = replace(item, earlier=(*earlier.earlier, replace(earlier, earlier=())))
            self._batch[key] = item
        else:
            self._unkeyed.append(item)
        if len(self._batch) + self._folded + len(self._unkeyed) >= self.batch_size:
            await self._dispatch()

    async def finish(self) -> None:
        await self._dispatch()
        while self._flights:
            await self._land(self._flights[0])

    async def close(self) -> None:
        """After a failure or a stop: let writes in flight end (they are idempotent), keep nothing."""
        for flight in self._flights:
            flight.task.cancel()
        await asyncio.gather(*(f.task for f in self._flights), return_exceptions=True)
        self._flights.clear()

    async def _dispatch(self) -> None:
        items = [*self._batch.values(), *self._unkeyed] if self.target.dedupe else self._unkeyed
        self._batch, self._unkeyed, self._folded = {}, [], 0
        if not items:
            return
        if self.stop_requested():
            raise RunStopped
        keys = self._conflict_keys(items)
        for flight in list(self._flights):
            if flight.outcome is None and flight.keys & keys:
                await self._land(flight)
        while sum(1 for f in self._flights if f.outcome is None) >= self.max_in_flight:
            await self._land(next(f for f in self._flights if f.outcome is None))
        end = max((i.file, i.line) for i in items)
        task = asyncio.create_task(self.target.write(items))
        self._flights.append(_Flight(task, keys, end))

    def _conflict_keys(self, items: list[Item]) -> frozenset[tuple[Any, ...]]:
        """What a batch may not share with one in flight: its keys — or, for a target whose row can
        collide with another record on one column of its key (a list on two match columns), each
        column's value, so file order decides which of two such rows is written and which collides."""
        keys = [self.target.key(i.row) or () for i in items]
        if not getattr(self.target, "conflicts_by_column", False):
            return frozenset(keys)
        return frozenset((column, value) for key in keys for column, value in enumerate(key))

    async def _land(self, flight: _Flight) -> None:
        if flight.outcome is None:
            outcome = await flight.task
            flight.outcome = outcome
            await self.on_written(outcome)
        advanced = False
        while self._flights and self._flights[0].outcome is not None:
            done = self._flights.popleft()
            assert done.outcome is not None
            self._done.add(WriteOutcome(done.outcome.inserted, done.outcome.updated,
                                        done.outcome.duplicates, done.outcome.unchanged))  # fmt: skip
            self._prefix_end = max(self._prefix_end, done.end)
            advanced = True
        if (
            advanced
            and self.save_checkpoint
            and time.monotonic() - self._last_saved >= self.checkpoint_interval
        ):
            self._last_saved = time.monotonic()
            await self.save_checkpoint(self.checkpoint())

    def checkpoint(self) -> Checkpoint:
        file, line = self._prefix_end
        d = self._done
        return Checkpoint(file, line, d.inserted, d.updated, d.duplicates, d.unchanged)
