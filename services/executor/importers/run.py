"""The import use case: SFTP file(s) or a partner-feed delivery → validated rows → a list or table.

Order of a run: connect; find the file(s) and check ready/count files (or the feed's manifest, MD5
digests and record counts); when a guard or a count file needs it, a validation pass that writes
nothing; then the load, with parsing overlapping bounded writes (`WritePipeline`); an overwrite
loads a new collection and swaps it in only after its guards pass; finally the rejects file.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.executor.audience import MongoAudienceStore
from services.executor.domain import (
    ColumnPlan,
    CsvRecord,
    Rejection,
    Tally,
    map_record,
    percent_milestone,
    plan_columns,
    reject_percent,
    rejects_path,
    shrink_percent,
)
from services.executor.domain.records import hit_record_text, record_text
from services.executor.errors import BadFile, GuardFailed, RunStopped
from services.executor.importers import feed, sources
from services.executor.importers.lists import ListTarget
from services.executor.importers.pipeline import Checkpoint, WritePipeline
from services.executor.importers.targets import (
    CustomAppendTarget,
    CustomMergeTarget,
    Item,
    ProfileExtensionTarget,
    Target,
    WriteOutcome,
)
from services.executor.ports import CatalogReader
from services.executor.reporting import RunReporter
from services.executor.repository import MongoRejectStore
from services.executor.sftp import RemoteFile, SftpSession, open_sftp
from shared.catalog_records import LIST_SYSTEM_FIELDS, TableKind, TableRecord
from shared.contracts.jobs import (
    CustomTableTarget,
    ImportSpec,
    PartnerFeedSource,
    SftpSource,
)
from shared.contracts.jobs import ListTarget as ListTargetSpec
from shared.contracts.jobs import ProfileExtensionTarget as ProfileExtensionSpec
from shared.errors import PermanentError
from shared.secrets import SecretBox


@dataclass(frozen=True)
class ImportSettings:
    batch_size: int
    read_chunk_bytes: int
    max_in_flight: int = 2
    limits: sources.SourceLimits = sources.DEFAULT_LIMITS  # decompression and record-length bounds


@dataclass
class ImportOutcome:
    tally: Tally
    rejects_file: str | None


@dataclass
class ImportContext:
    """What a run attempt brings to the importer: identity, resumption, hooks."""

    run_id: str
    tag: str  # identifies this attempt's writes (`_cx_run`)
    resume: Checkpoint | None = None
    save_checkpoint: Callable[[Checkpoint], Awaitable[None]] | None = None
    # Waits for the writer lock of (collection, table name); True when the run held it already.
    hold_table: Callable[[str, str], Awaitable[bool]] | None = None
    on_bytes: Callable[[str, int], None] = lambda direction, count: None
    on_records: Callable[[str, int], None] = lambda outcome, count: None


class ImportRun:
    def __init__(
        self,
        spec: ImportSpec,
        reporter: RunReporter,
        *,
        catalog: CatalogReader,
        store: MongoAudienceStore,
        rejects: MongoRejectStore,
        secrets: SecretBox,
        settings: ImportSettings,
        stop_requested: Callable[[], bool],
        context: ImportContext,
    ) -> None:
        self.spec = spec
        self.reporter = reporter
        self.catalog = catalog
        self.store = store
        self.rejects = rejects
        self.secrets = secrets
        self.settings = settings
        self.stop_requested = stop_requested
        self.context = context
        self.tally = Tally()
        self.bytes_total: int | None = None
        self._files: list[RemoteFile] = []
        self._delivery: feed.Delivery | None = None
        self._staging: str | None = None

    @property
    def overwrite(self) -> bool:
        return isinstance(self.spec.target, CustomTableTarget) and self.spec.target.mode == "overwrite"

    async def run(self) -> ImportOutcome:
        table = await self.catalog.table(self.spec.target.table)
        connection = await self.catalog.connection(self.spec.source.connection_id)
        target = await self._target(table)
        async with open_sftp(connection, self.secrets) as sftp:
            sftp.on_bytes = self.context.on_bytes
            await self.reporter.log(
                f"connected to {connection.host}:{connection.port}", connection=connection.name
            )
            await self._find_source(sftp)
            if self._needs_validation_pass():
                await self._validation_pass(sftp, table, target)
            try:
                await self._hold_table(table)
                await self._load(sftp, table, target)
                if self._staging is not None:
                    await self._swap(table)
            finally:
                if self._staging is not None:  # failed or stopped: the old table stays, the new one goes
                    self.tally.nothing_written()
                    with contextlib.suppress(Exception):
                        await self.store.drop(self._staging)
            await self._finish_counts()
            rejects_file = await self._write_rejects(sftp)
        return ImportOutcome(self.tally, rejects_file)

    # --- target -----------------------------------------------------------------------------------

    async def _target(self, table: TableRecord) -> Target:
        spec, store, tag = self.spec.target, self.store, self.context.tag
        if isinstance(spec, ListTargetSpec):
            self._require_kind(table, TableKind.LIST)
            await store.ensure_table(table, match_columns=spec.match_columns)
            return ListTarget(store, table, tag, match_columns=spec.match_columns,
                              insert_on_no_match=spec.insert_on_no_match,
                              replace_all=spec.update_on_match == "replace_all",
                              mapped_fields=self._mapped_fields(), redo_after=self._redo_after)  # fmt: skip
        if isinstance(spec, ProfileExtensionSpec):
            self._require_kind(table, TableKind.PROFILE_EXTENSION)
            if not table.parent_list:
                raise PermanentError(f"profile extension table {table.name} has no parent list")
            parent = await self.catalog.table(table.parent_list)
            await store.ensure_table(parent, match_columns=(spec.match_column,))
            await store.ensure_table(table)
            return ProfileExtensionTarget(store, table, tag, parent=parent, match_column=spec.match_column,
                                          mapped=self._mapped_fields(), redo_after=self._redo_after)  # fmt: skip
        self._require_kind(table, TableKind.CUSTOM)
        if spec.mode == "append":
            await store.ensure_table(table)
            return CustomAppendTarget(store, table, self.context.run_id, tag)
        if spec.mode == "overwrite":
            self._staging = f"{table.collection}__loading_{self.context.run_id.replace('.', '_')}"
            await store.drop(self._staging)  # a partial load of an earlier attempt
            await store.ensure_table(table, self._staging)
            self.context.resume = None  # an overwrite always loads its new collection from the start
            return CustomMergeTarget(
                store, table, tag, collection=self._staging, mapped=self._mapped_fields()
            )
        await store.ensure_table(table)
        return CustomMergeTarget(store, table, tag, mapped=self._mapped_fields(), redo_after=self._redo_after)

    def _mapped_fields(self) -> tuple[str, ...]:
        return tuple(m.field for m in self.spec.mapping)

    def _redo_after(self) -> tuple[int, int]:
        """Rows this run wrote after this position in an attempt that ended are not counted yet."""
        resume = self.context.resume
        return (resume.file, resume.line) if resume is not None else (-1, 0)

    async def _hold_table(self, table: TableRecord) -> None:
        """Runs writing one table take turns (docs/executor.md, "Concurrent runs on one table")."""
        if self.context.hold_table is None:
            return
        continued = await self.context.hold_table(table.collection, table.name)
        if not continued and self.context.resume is not None:
            # Another run wrote the table since this run's checkpoint: only a full load keeps a serial order.
            self.context.resume = None
            if self.context.save_checkpoint is not None:  # nor may a later take-over resume from the old one
                await self.context.save_checkpoint(Checkpoint())
            await self.reporter.log(
                f"table {table.name} was written by another run since the checkpoint: loading from the start"
            )

    @staticmethod
    def _require_kind(table: TableRecord, kind: TableKind) -> None:
        if table.kind != kind:
            raise PermanentError(
                f"table {table.name} is a {table.kind.value} table, not a {kind.value} table"
            )

    def _fields(self, table: TableRecord) -> tuple[Any, ...]:
        fields = tuple(table.fields)
        if isinstance(self.spec.target, ProfileExtensionSpec):
            match = next(f for f in LIST_SYSTEM_FIELDS if f.name == self.spec.target.match_column)
            fields = (*fields, match) if table.field(match.name) is None else fields
        if table.kind == TableKind.LIST and table.field("RIID_") is None:
            fields = (*LIST_SYSTEM_FIELDS, *fields)
        return fields

    # --- source -----------------------------------------------------------------------------------

    async def _find_source(self, sftp: SftpSession) -> None:
        source = self.spec.source
        if isinstance(source, PartnerFeedSource):
            manifest = await feed.find_manifest(sftp, source)
            await self.reporter.log(
                f"manifest found: {manifest.path} ({manifest.size} bytes)", size=manifest.size
            )
            self._delivery = await feed.open_delivery(
                sftp, manifest, self.settings.read_chunk_bytes, self.settings.limits
            )
            d = self._delivery
            await self.reporter.log(
                f"delivery checked: {len(d.data)} data file(s), {len(d.content.lookup_files)} lookup file(s), "
                f"MD5 digests and record counts match the manifest",
                records=d.content.total_records,
            )
            self.bytes_total = d.size
            return
        assert isinstance(source, SftpSource)
        self._files = await sources.resolve_files(sftp, source)
        for remote in self._files:
            if await sources.check_ready(sftp, source, remote, self.stop_requested):
                await self.reporter.log(f"ready file of {remote.name} appeared")
            await self.reporter.log(f"file found: {remote.path} ({remote.size} bytes)", size=remote.size)
        self.bytes_total = sum(f.size for f in self._files)

    def _needs_validation_pass(self) -> bool:
        source = self.spec.source
        counted = isinstance(source, SftpSource) and source.count_file
        guarded = self.spec.guards.max_reject_percent is not None
        return not self.overwrite and (counted or guarded)

    async def _pieces(
        self, sftp: SftpSession, on_raw: Callable[[int], None]
    ) -> AsyncIterator[sources.Parsed]:
        if self._delivery is not None:
            async for piece in feed.hit_pieces(
                sftp, self._delivery, self.settings.read_chunk_bytes, on_raw, self.settings.limits
            ):
                yield piece
            return
        source = self.spec.source
        assert isinstance(source, SftpSource)
        for file_no, remote in enumerate(self._files):
            compression = sources.compression_of(remote.path, source.compression)
            limits, size = self.settings.limits, self.settings.read_chunk_bytes
            chunks = sources.decoded_chunks(sftp, remote, compression, size, on_raw, limits)
            async for piece in sources.csv_pieces(chunks, self.spec.format, file_no, limits):
                yield piece

    async def _records(
        self, sftp: SftpSession, table: TableRecord, on_raw: Callable[[int], None], *, announce: bool
    ) -> AsyncIterator[tuple[int, list[CsvRecord], ColumnPlan]]:
        """Data records with the column plan of their file (header rows consumed here)."""
        plan: ColumnPlan | None = None
        lookups: dict[int, str] = {}
        for_file = -1
        async for piece in self._pieces(sftp, on_raw):
            records = piece.records
            self.tally.skipped += piece.blank  # blank lines: counted apart, not read (again each pass)
            if piece.header:
                for_file = piece.file
                if not records:
                    raise BadFile(f"{self._file_name(piece.file)} is empty: no header row")
                plan, lookups = await self._plan(records[0], table, announce=announce and piece.file == 0)
                if self.spec.format.header or self._delivery is not None:
                    records = records[1:]
            assert plan is not None and for_file == piece.file
            if self._delivery is not None:
                records = await asyncio.to_thread(feed.translate_lookups, self._delivery, records, lookups)
            yield piece.file, records, plan

    async def _plan(
        self, first: CsvRecord, table: TableRecord, *, announce: bool
    ) -> tuple[ColumnPlan, dict[int, str]]:
        by_header = self.spec.format.header or self._delivery is not None
        header = first.values if by_header else [str(i + 1) for i in range(len(first.values))]
        plan = plan_columns(header, self.spec.mapping, self._fields(table))
        lookups: dict[int, str] = {}
        if self._delivery is not None:
            for position, table_field in plan.positions:
                name = header[position]
                if name in self._delivery.lookups:
                    lookups[position] = name
                del table_field
        if announce:
            await self.reporter.log(f"header read: {len(header)} columns", columns=",".join(header)[:500])
        return plan, lookups

    def _mapped(
        self, records: list[CsvRecord], plan: ColumnPlan
    ) -> list[tuple[CsvRecord, dict[str, Any] | Rejection, str]]:
        """Rows (or rejections) and texts of a piece's records: CPU only, run off the event loop."""
        return [(r, map_record(r, plan), self._record_text(r.values)) for r in records]

    def _record_text(self, values: list[str]) -> str:
        """The record as a line of its file, kept with a reject (the rejects API shows it)."""
        if self._delivery is not None:
            return hit_record_text(values)
        return record_text(values, self.spec.format.delimiter, self.spec.format.quote)

    def _file_name(self, file_no: int) -> str:
        if self._delivery is not None:
            return self._delivery.data[file_no].name
        return self._files[file_no].name

    # --- passes -----------------------------------------------------------------------------------

    async def _validation_pass(self, sftp: SftpSession, table: TableRecord, target: Target) -> None:
        """Parse and validate everything, write nothing: guards and count files decide before the load."""
        read = rejected = self.tally.skipped = 0
        per_file: dict[int, int] = {}
        async for file_no, records, plan in self._records(sftp, table, lambda n: None, announce=False):
            per_file[file_no] = per_file.get(file_no, 0) + len(records)
            read += len(records)
            rejected += await asyncio.to_thread(_rejected_count, records, plan, target)
            if self.stop_requested():
                raise RunStopped
        self.tally.read, self.tally.rejected = read, rejected  # what a run refused here reports
        source = self.spec.source
        if isinstance(source, SftpSource) and source.count_file:
            for file_no, remote in enumerate(self._files):
                expected = await sources.expected_count(sftp, remote)
                found = per_file.get(file_no, 0)
                if expected != found:
                    raise GuardFailed(
                        f"count file of {remote.name} says {expected} records, the file holds {found}"
                    )
                await self.reporter.log(f"count file of {remote.name} matches: {found} records")
        await self._reject_guard(rejected, read)

    async def _reject_guard(self, rejected: int, read: int) -> None:
        limit = self.spec.guards.max_reject_percent
        if limit is None:
            return
        percent = reject_percent(rejected, read)
        verdict = "passed" if percent <= limit else "failed"
        await self.reporter.log(
            f"guard max_reject_percent {verdict}: {rejected} of {read} records rejected "
            f"({percent:.1f} %, limit {limit:g} %)",
            guard="max_reject_percent", percent=round(percent, 2),
        )  # fmt: skip
        if verdict == "failed":
            raise GuardFailed(
                f"{percent:.1f} % of the records are rejected, more than the limit of {limit:g} %"
            )

    async def _load(self, sftp: SftpSession, table: TableRecord, target: Target) -> None:
        resume = self.context.resume
        self.tally.read = self.tally.rejected = self.tally.skipped = 0  # counted again, as loaded
        if resume is not None:
            self.tally.inserted, self.tally.updated = resume.inserted, resume.updated
            self.tally.duplicates, self.tally.unchanged = resume.duplicates, resume.unchanged
            await self.reporter.log(
                f"resuming after line {resume.line} of file {resume.file + 1}: "
                f"{resume.inserted} inserted and {resume.updated} updated before the take-over"
            )
        pipeline = WritePipeline(
            target,
            batch_size=self.settings.batch_size,
            max_in_flight=self.settings.max_in_flight,
            resume=resume,
            on_written=self._written,
            on_rejected=self.tally.reject,
            save_checkpoint=None if self.overwrite else self.context.save_checkpoint,
            stop_requested=self.stop_requested,
        )
        milestone = 0

        def on_raw(count: int) -> None:
            self.tally.bytes_read += count

        try:
            async for file_no, records, plan in self._records(sftp, table, on_raw, announce=True):
                for record, row, raw in await asyncio.to_thread(self._mapped, records, plan):
                    self.tally.read += 1
                    if isinstance(row, Rejection):
                        self.tally.reject(Rejection(row.line, row.field, row.reason, file_no, record=raw))
                    else:
                        await pipeline.add(Item(file_no, record.line, row, raw=raw))
                if len(self.tally.rejections) >= 1000:
                    await self.rejects.save(self.context.run_id, self.tally.take_rejections())
                reached = percent_milestone(self.tally.bytes_read, self.bytes_total, milestone)
                if reached is not None:
                    milestone = reached
                    await self.reporter.log(f"{reached} % of the file read", records=self.tally.read)
                if self.stop_requested():
                    raise RunStopped
            await pipeline.finish()
        finally:
            await pipeline.close()
            with contextlib.suppress(Exception):
                await self.rejects.save(self.context.run_id, self.tally.take_rejections())
        if resume is not None and pipeline.skipped:
            await self.reporter.log(
                f"{pipeline.skipped} records before the checkpoint were not written again"
            )

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

    async def _finish_counts(self) -> None:
        self.tally.rejected = await self.rejects.count(self.context.run_id)
        self.context.on_records("rejected", self.tally.rejected)
        if self.tally.duplicates:
            await self.reporter.log(
                f"{self.tally.duplicates} duplicate key(s) in the file: the last occurrence of each was kept",
                duplicates=self.tally.duplicates,
            )
        if self.tally.unchanged:
            await self.reporter.log(
                f"{self.tally.unchanged} matching record(s) left unchanged (update_on_match: no_update)"
            )

    async def _swap(self, table: TableRecord) -> None:
        assert self._staging is not None
        await self.rejects.save(self.context.run_id, self.tally.take_rejections())
        rejected = self.tally.rejected = await self.rejects.count(self.context.run_id)
        await self._reject_guard(rejected, self.tally.read)
        before = await self.store.count(table.collection)
        after = await self.store.count(self._staging)
        limit = self.spec.guards.max_shrink_percent
        if limit is not None:
            shrink = shrink_percent(before, after)
            verdict = "passed" if shrink <= limit else "failed"
            await self.reporter.log(
                f"guard max_shrink_percent {verdict}: {before} → {after} rows ({shrink:.1f} % smaller, "
                f"limit {limit:g} %)", guard="max_shrink_percent", percent=round(shrink, 2),
            )  # fmt: skip
            if verdict == "failed":
                raise GuardFailed(
                    f"the overwrite would shrink {table.name} by {shrink:.1f} % ({before} → {after} rows), "
                    f"more than the limit of {limit:g} %"
                )
        if self.stop_requested():
            raise RunStopped
        await self.store.swap_in(self._staging, table.collection)
        self._staging = None
        await self.reporter.log(
            f"new contents of {table.name} swapped in: {after} rows (were {before})", rows=after
        )

    # --- rejects file -----------------------------------------------------------------------------

    async def _write_rejects(self, sftp: SftpSession) -> str | None:
        if not self.tally.rejected:
            return None
        first: str | None = None
        for file_no in await self.rejects.files(self.context.run_id):
            source_path = self._source_path(sftp, file_no)
            path = rejects_path(source_path, self.context.run_id)

            async def produce(write: Callable[[bytes], Awaitable[None]], file_no: int = file_no) -> None:
                buffer = io.StringIO()
                writer = csv.writer(buffer, lineterminator="\r\n")
                writer.writerow(["line", "field", "reason"])
                async for r in self.rejects.iterate(self.context.run_id, file_no):
                    writer.writerow([r.line, r.field, r.reason])
                    if buffer.tell() > 256 * 1024:
                        await write(buffer.getvalue().encode())
                        buffer.seek(0)
                        buffer.truncate()
                await write(buffer.getvalue().encode())

            written = await sftp.write_stream(path, produce)
            count = await self.rejects.count(self.context.run_id, file_no)
            await self.reporter.log(f"{count} rejected record(s) written to {written}", path=written)
            first = first or written
        return first

    def _source_path(self, sftp: SftpSession, file_no: int) -> str:
        if self._delivery is not None:
            return sources.relative(sftp, self._delivery.manifest.path)
        return sources.relative(sftp, self._files[file_no].path)


def _rejected_count(records: list[CsvRecord], plan: ColumnPlan, target: Target) -> int:
    """Records of a piece the load would reject (CPU only: the validation pass runs it in a thread)."""
    rows = (map_record(record, plan) for record in records)
    return sum(isinstance(row, Rejection) or target.key(row) is None for row in rows)
