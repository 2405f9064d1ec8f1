"""Logsink use cases: every event joins a batch; a batch is written at once, each event applied once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from services.logsink import domain
from services.logsink.batching import Batcher
from services.logsink.domain import Ended, Planned
from services.logsink.ports import IngestMetrics, RunRecords
from shared.contracts import RunLog

logger = logging.getLogger(__name__)

# An event waiting for its batch, with what its message is acknowledged by (None when awaited instead).
Entry = tuple[Planned, Any]
# Told after each batch which receipts it held and whether it was written (None) or failed.
Settle = Callable[[list[Any], Exception | None], Awaitable[None]]
# Makes the notifications a batch's final outcomes owe (`NotificationMaker.make`).
Notify = Callable[[list[Ended]], Awaitable[int]]


class LogsinkService:
    def __init__(
        self,
        records: RunRecords,
        metrics: IngestMetrics,
        *,
        settle: Settle | None = None,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        writes_in_flight: int = 1,
        notify: Notify | None = None,
    ) -> None:
        self.records = records
        self.metrics = metrics
        self.settle = settle  # told after each batch which receipts it held (None: events are awaited)
        self.notify = notify
        self.batcher: Batcher[Entry] = Batcher(
            self._write_entries,
            max_size=batch_size,
            max_delay=flush_interval,
            on_written=lambda _, seconds: metrics.batch_written(seconds),
            on_settled=self._settled,
            max_in_flight=writes_in_flight,
        )

    def accept(self, planned: Planned, receipt: Any) -> None:
        """Add a planned event to the next batch; `settle` gets its receipt once the batch is written."""
        self.batcher.add((planned, receipt))

    async def record(self, body: dict[str, Any]) -> None:
        """Plan the event's writes (invalid or unknown events raise at once) and wait for its batch."""
        await self.batcher.submit((domain.plan(body), None))

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()

    async def _write_entries(self, entries: list[Entry]) -> None:
        await self.write_batch([planned for planned, _ in entries])

    async def _settled(self, entries: list[Entry], error: Exception | None) -> None:
        if self.settle is not None:
            await self.settle([receipt for _, receipt in entries if receipt is not None], error)

    async def write_batch(self, batch: list[Planned]) -> None:
        fresh, duplicates = domain.fresh_events(batch)
        written = await self.records.write(
            logs=[p.log for p in fresh if p.log is not None],
            runs=domain.run_writes(fresh),
            group_runs=[(p.kind, update) for p in fresh for update in p.group_runs],
        )
        ended = [p.ended for p in fresh if p.ended is not None]
        if ended and self.notify is not None:
            # Before the batch is acknowledged: a crash here redelivers the end, which makes the same ids.
            await self.notify(ended)
        duplicates.update(written.refused)
        if written.duplicate_lines:
            duplicates[RunLog.routing_key] += written.duplicate_lines
        recorded = Counter(p.kind for p in batch)  # superseded progress counts: it was received and read
        recorded.subtract(duplicates)
        for kind, count in recorded.items():
            self.metrics.recorded(kind, count)
        for kind, count in duplicates.items():
            self.metrics.duplicates(kind, count)
