"""The import use case: SFTP file → CSV records → validated rows → merged into a table.

Reading and parsing overlap with the database write of the previous batch (one write in flight, so
a key repeated across batches ends with its last value, deterministically).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.executor.domain import (
    ColumnPlan,
    CsvRecord,
    CsvSplitter,
    Rejection,
    Tally,
    map_record,
    percent_milestone,
    plan_columns,
    rejects_csv_lines,
    rejects_path,
)
from services.executor.errors import BadFile, RunStopped
from services.executor.ports import CatalogReader, TableWriter, WriteResult
from services.executor.reporting import RunReporter
from services.executor.sftp import SftpSession, open_sftp
from shared.catalog_records import TableRecord
from shared.contracts.jobs import CustomTableTarget, ImportSpec, SftpSource
from shared.errors import PermanentError
from shared.secrets import SecretBox


@dataclass(frozen=True)
class ImportSettings:
    batch_size: int
    read_chunk_bytes: int


@dataclass
class ImportOutcome:
    tally: Tally
    rejects_file: str | None


class ImportRun:
    def __init__(
        self,
        spec: ImportSpec,
        reporter: RunReporter,
        *,
        catalog: CatalogReader,
        writer: TableWriter,
        secrets: SecretBox,
        settings: ImportSettings,
        stop_requested: Callable[[], bool],
    ) -> None:
        self.spec = spec
        self.reporter = reporter
        self.catalog = catalog
        self.writer = writer
        self.secrets = secrets
        self.settings = settings
        self.stop_requested = stop_requested
        self.tally = Tally()
        self._pending_write: asyncio.Task[WriteResult] | None = None

    @property
    def source(self) -> SftpSource:
        if not isinstance(self.spec.source, SftpSource):
            raise PermanentError(f"import source '{self.spec.source.kind}' is not supported by this executor")
        return self.spec.source

    async def run(self) -> ImportOutcome:
        target = self.spec.target
        if not isinstance(target, CustomTableTarget) or target.mode != "merge":
            raise PermanentError(f"import into a {target.kind} table is not supported by this executor")
        table = await self.catalog.table(target.table)
        connection = await self.catalog.connection(self.source.connection_id)
        await self.writer.prepare(table)
        async with open_sftp(connection, self.secrets) as sftp:
            await self.reporter.log(
                f"connected to {connection.host}:{connection.port}", connection=connection.name
            )
            try:
                await self._load(sftp, table)
            finally:
                await self._drain()
            rejects_file = await self._write_rejects(sftp)
        return ImportOutcome(self.tally, rejects_file)

    async def _load(self, sftp: SftpSession, table: TableRecord) -> None:
        remote = await sftp.stat(self.source.path)
        await self.reporter.log(f"file found: {remote.path} ({remote.size} bytes)", size=remote.size)
        splitter = CsvSplitter(self.spec.format)
        plan: ColumnPlan | None = None
        batch: list[dict[str, Any]] = []
        milestone = 0
        async for chunk in sftp.read_chunks(remote, self.settings.read_chunk_bytes):
            self.tally.bytes_read += len(chunk)
            records = splitter.feed(chunk)
            plan, batch = await self._consume(records, plan, table, batch)
            if (reached := percent_milestone(self.tally.bytes_read, remote.size, milestone)) is not None:
                milestone = reached
                await self.reporter.log(f"{reached} % of the file read", records=self.tally.read)
            await self.reporter.progress(self.tally, remote.size)
            if self.stop_requested():
                raise RunStopped
        plan, batch = await self._consume(splitter.feed(b"", final=True), plan, table, batch)
        if plan is None:
            raise BadFile("the file is empty: no header row")
        if batch:
            await self._write(table, batch)

    async def _consume(
        self,
        records: list[CsvRecord],
        plan: ColumnPlan | None,
        table: TableRecord,
        batch: list[dict[str, Any]],
    ) -> tuple[ColumnPlan | None, list[dict[str, Any]]]:
        for record in records:
            if plan is None:
                plan = await self._plan(record, table)
                if self.spec.format.header:
                    continue
            self.tally.read += 1
            row = map_record(record, plan)
            if isinstance(row, Rejection):
                self.tally.reject(row)
                continue
            batch.append(row)
            if len(batch) >= self.settings.batch_size:
                await self._write(table, batch)
                batch = []
        return plan, batch

    async def _plan(self, first: CsvRecord, table: TableRecord) -> ColumnPlan:
        header = first.values if self.spec.format.header else [str(i + 1) for i in range(len(first.values))]
        plan = plan_columns(header, self.spec.mapping, table.fields)
        missing_keys = [k for k in table.primary_key if k not in {f.name for _, f in plan.positions}]
        if missing_keys:
            raise BadFile(f"mapping does not fill the primary key field(s) {', '.join(missing_keys)}")
        await self.reporter.log(f"header read: {len(header)} columns", columns=",".join(header)[:500])
        return plan

    async def _write(self, table: TableRecord, rows: list[dict[str, Any]]) -> None:
        await self._drain()
        self._pending_write = asyncio.create_task(self.writer.merge(table, rows))

    async def _drain(self) -> None:
        if self._pending_write is not None:
            task, self._pending_write = self._pending_write, None
            result = await task
            self.tally.inserted += result.inserted
            self.tally.updated += result.updated

    async def _write_rejects(self, sftp: SftpSession) -> str | None:
        if not self.tally.rejections:
            return None
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rejects_csv_lines(self.tally.rejections))
        path = rejects_path(self.source.path, self.reporter.run_id)
        written = await sftp.write_file(path, buffer.getvalue().encode())
        await self.reporter.log(
            f"{self.tally.rejected} rejected record(s) written to {written}", path=written
        )
        return written
