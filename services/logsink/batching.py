"""Batched ingest: events wait in a batch that is written by size or after a short delay.

Items join with `add` (nothing awaited: the consumer's per-message path) or `submit` (awaits the
item's batch). Batches are cut in the order their items arrived and up to `max_in_flight` are written
at once (a batch is cut only when a write slot is free, so it keeps filling meanwhile); after each batch
`on_settled` learns whether it was durably written, and only then are the messages in it acknowledged
(or requeued if it could not be written). Batches may finish out of order: the writes they hold are
order-tolerant (as between two logsinks), and the consumer acknowledges a delivery only once every
earlier one is settled. With a prefetch larger than the batch size, the next batch fills up while one
is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from shared.errors import RetryableError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Writer = Callable[[list[T]], Awaitable[None]]
Settled = Callable[[list[T], Exception | None], Awaitable[None]]


class Batcher(Generic[T]):
    def __init__(
        self,
        write: Writer[T],
        *,
        max_size: int,
        max_delay: float,
        retries: int = 5,
        retry_backoff: float = 0.2,
        on_written: Callable[[list[T], float], None] | None = None,
        on_settled: Settled[T] | None = None,
        max_in_flight: int = 1,
    ) -> None:
        self.write = write
        self.max_size = max_size
        self.max_delay = max_delay
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.on_written = on_written
        self.on_settled = on_settled
        self._pending: list[tuple[T, asyncio.Future[None] | None]] = []
        self._first_at = 0.0
        self._has_items = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # While one batch's reply waits, the database can already write the next one.
        self._slots = asyncio.Semaphore(max_in_flight)
        self._writing = 0
        self._wrote = asyncio.Event()

    def add(self, item: T) -> None:
        """Add an item to the next batch; `on_settled` tells when (and whether) it was written."""
        self._append(item, None)

    async def submit(self, item: T) -> None:
        """Add an item to the next batch and wait until that batch is written."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._append(item, future)
        await future

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _append(self, item: T, future: asyncio.Future[None] | None) -> None:
        if self._closed:
            raise RetryableError("the logsink is shutting down")
        if not self._pending:
            self._first_at = time.monotonic()
            self._has_items.set()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_size:
            self._full.set()

    async def start(self) -> None:
        self._closed = False
        self._task = asyncio.create_task(self._run(), name="ingest-batcher")

    async def stop(self) -> None:
        """Write what is pending, then stop (called after consuming has stopped)."""
        self._closed = True
        self._has_items.set()
        self._full.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._has_items.wait()
                if self._closed and not self._pending:
                    return
                remaining = self._first_at + self.max_delay - time.monotonic()
                if remaining > 0 and len(self._pending) < self.max_size and not self._closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), remaining)
                await self._slots.acquire()
                await self._full_while_writing()
                batch = self._cut()
                if not batch:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._write_and_settle(batch), name="ingest-batch")
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        finally:
            if in_flight:  # stopping: the batches being written are settled first
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _full_while_writing(self) -> None:
        """While a batch is being written, the next one is cut only when full (or when none is being
        written any more): under a flood batches stay at the batch size, and so do their chunks (one
        per run and batch: a document costs the database far more than a line in it)."""
        while self._writing and len(self._pending) < self.max_size and not self._closed:
            self._wrote.clear()
            waits = [asyncio.ensure_future(self._full.wait()), asyncio.ensure_future(self._wrote.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()

    def _cut(self) -> list[tuple[T, asyncio.Future[None] | None]]:
        batch, self._pending = self._pending[: self.max_size], self._pending[self.max_size :]
        if not self._closed:
            self._full.clear()
        if self._pending:
            self._first_at = time.monotonic()
            if len(self._pending) >= self.max_size:
                self._full.set()
        elif not self._closed:
            self._has_items.clear()
        return batch

    async def _write_and_settle(self, batch: list[tuple[T, asyncio.Future[None] | None]]) -> None:
        self._writing += 1
        try:
            await self._settle(batch)
        finally:
            self._writing -= 1
            self._wrote.set()
            self._slots.release()

    async def _settle(self, batch: list[tuple[T, asyncio.Future[None] | None]]) -> None:
        items = [item for item, _ in batch]
        error = await self._write_with_retries(items)
        if self.on_settled is not None:
            try:
                await self.on_settled(items, error)
            except Exception:  # acknowledging failed: the broker redelivers, the write is idempotent
                logger.exception("settling a batch failed", extra={"size": len(items)})
        for _, future in batch:
            if future is None or future.done():
                continue  # added without waiting, or the waiting handler was cancelled
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def _write_with_retries(self, items: list[T]) -> Exception | None:
        for attempt in range(1, self.retries + 1):
            started = time.perf_counter()
            try:
                await self.write(items)
            except RetryableError as exc:
                logger.warning(
                    "batch write failed", extra={"attempt": attempt, "size": len(items), "reason": str(exc)}
                )
                if attempt == self.retries:
                    return exc
                await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))
                continue
            except Exception as exc:  # a bug: fail the batch, its messages are redelivered
                logger.exception("batch write failed unexpectedly", extra={"size": len(items)})
                return exc
            if self.on_written is not None:
                self.on_written(items, time.perf_counter() - started)
            return None
        return RetryableError("unreachable")
