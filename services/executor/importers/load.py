"""The load: records mapped off the event loop, rows handed to the `WritePipeline` (bounded writes while
the next records are read, checkpoints), rejects saved as they come, the run log told each 10 % read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from services.executor.domain import Rejection, Tally, percent_milestone
from services.executor.errors import RunStopped
from services.executor.importers.batch import Item, WriteOutcome
from services.executor.importers.context import ImportContext, ImportSettings
from services.executor.importers.pipeline import WritePipeline
from services.executor.importers.reader import SourceReader
from services.executor.importers.targets import Target
from services.executor.reporting import RunReporter
from services.executor.repository import MongoRejectStore
from services.executor.sftp import SftpSession
from shared.catalog_records import TableRecord

REJECTS_HELD = 1000  # rejections kept in memory before they are saved


class Load:
    def __init__(
        self,
        source: SourceReader,
        target: Target,
        *,
        tally: Tally,
        reporter: RunReporter,
        rejects: MongoRejectStore,
        context: ImportContext,
        settings: ImportSettings,
        stop_requested: Callable[[], bool],
        checkpointed: bool,  # an overwrite's load is not: it always loads its new collection from the start
    ) -> None:
        self.source = source
        self.target = target
        self.tally = tally
        self.reporter = reporter
        self.rejects = rejects
        self.context = context
        self.settings = settings
        self.stop_requested = stop_requested
        self.checkpointed = checkpointed

    async def run(self, sftp: SftpSession, table: TableRecord) -> None:
        resume, tally = self.context.resume, self.tally
        tally.read = tally.rejected = tally.skipped = 0  # counted again, as loaded
        if resume is not None:
            tally.inserted, tally.updated = resume.inserted, resume.updated
            tally.duplicates, tally.unchanged = resume.duplicates, resume.unchanged
            await self.reporter.log(
                f"resuming after line {resume.line} of file {resume.file + 1}: "
                f"{resume.inserted} inserted and {resume.updated} updated before the take-over"
            )
        pipeline = WritePipeline(
            self.target,
            batch_size=self.settings.batch_size,
            max_in_flight=self.settings.max_in_flight,
            resume=resume,
            on_written=self._written,
            on_rejected=tally.reject,
            save_checkpoint=self.context.save_checkpoint if self.checkpointed else None,
            stop_requested=self.stop_requested,
        )
        try:
            await self._feed(sftp, table, pipeline)
            await pipeline.finish()
        finally:
            await pipeline.close()
            with contextlib.suppress(Exception):
                await self.rejects.save(self.context.run_id, tally.take_rejections())
        if resume is not None and pipeline.skipped:
            await self.reporter.log(
                f"{pipeline.skipped} records before the checkpoint were not written again"
            )

    async def _feed(self, sftp: SftpSession, table: TableRecord, pipeline: WritePipeline) -> None:
        tally, milestone = self.tally, 0

        def on_raw(count: int) -> None:
            tally.bytes_read += count

        async for file_no, records, plan in self.source.records(sftp, table, tally, on_raw, announce=True):
            for record, row, raw in await asyncio.to_thread(self.source.mapped, records, plan):
                tally.read += 1
                if isinstance(row, Rejection):
                    tally.reject(Rejection(row.line, row.field, row.reason, file_no, record=raw))
                else:
                    await pipeline.add(Item(file_no, record.line, row, raw=raw))
            if len(tally.rejections) >= REJECTS_HELD:
                await self.rejects.save(self.context.run_id, tally.take_rejections())
            reached = percent_milestone(tally.bytes_read, self.source.bytes_total, milestone)
            if reached is not None:
                milestone = reached
                await self.reporter.log(f"{reached} % of the file read", records=tally.read)
            if self.stop_requested():
                raise RunStopped

    async def _written(self, outcome: WriteOutcome) -> None:
        if outcome.rejections:
            await self.rejects.save(self.context.run_id, outcome.rejections)
        self.tally.inserted += outcome.inserted
        self.tally.updated += outcome.updated
        self.tally.duplicates += outcome.duplicates
        self.tally.rejected += len(outcome.rejections)
        self.tally.unchanged += outcome.unchanged
        self.context.on_records("inserted", outcome.inserted)
        self.context.on_records("updated", outcome.updated)
        self.context.on_records("unchanged", outcome.unchanged)
