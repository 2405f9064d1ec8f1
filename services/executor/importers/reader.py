"""Where an import's records come from: the file(s) found on SFTP (ready files waited for), or a partner
feed's delivery (manifest, MD5 digests and record counts checked), read as data records with the column
plan of their file. The validation pass and the load both read the source through here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from services.executor.domain import ColumnPlan, CsvRecord, Rejection, Tally, map_record, plan_columns
from services.executor.domain.records import hit_record_text, record_text
from services.executor.domain.targets import mappable_fields
from services.executor.errors import BadFile
from services.executor.importers import feed, partner_files, sources
from services.executor.pgp_files import DecryptKeys, Spool
from services.executor.reporting import RunReporter
from services.executor.sftp import ByteSource, RemoteFile, SftpSession
from shared.catalog_records import TableRecord
from shared.contracts.jobs import ImportSpec, PartnerFeedSource, SftpSource

Mapped = tuple[CsvRecord, dict[str, Any] | Rejection, str]  # a record, its row (or rejection), its text


class SourceReader:
    def __init__(
        self,
        spec: ImportSpec,
        reporter: RunReporter,
        *,
        chunk_bytes: int,
        limits: sources.SourceLimits,
        stop_requested: Callable[[], bool],
        minute_seconds: float = 60.0,
        decrypt: DecryptKeys | None = None,
        spool_dir: str | None = None,
    ) -> None:
        self.spec = spec
        self.reporter = reporter
        self.chunk_bytes = chunk_bytes
        self.limits = limits
        self.stop_requested = stop_requested
        self.files: list[RemoteFile] = []  # an SFTP source's, in load order
        self.delivery: feed.Delivery | None = None  # a partner feed's
        self.bytes_total: int | None = None
        self.minute_seconds = minute_seconds  # of an `if_missing: wait`
        self.skip = False  # empty, and the job says on_empty: skip
        self.decrypt = decrypt  # an encrypted source's keys: its files are read from `spool` once decrypted
        self.spool_dir = spool_dir
        self.spool: Spool | None = None

    async def find(self, sftp: SftpSession) -> None:
        source = self.spec.source
        if isinstance(source, PartnerFeedSource):
            manifest = await feed.find_manifest(sftp, source)
            await self.reporter.log(
                f"manifest found: {manifest.path} ({manifest.size} bytes)", size=manifest.size
            )
            self.delivery = d = await feed.open_delivery(sftp, manifest, self.chunk_bytes, self.limits)
            await self.reporter.log(
                f"delivery checked: {len(d.data)} data file(s), {len(d.content.lookup_files)} lookup file(s), "
                f"MD5 digests and record counts match the manifest",
                records=d.content.total_records,
            )
            self.bytes_total = d.size
            return
        assert isinstance(source, SftpSource)
        self.files = await partner_files.find_files(sftp, source, self.reporter, stop_requested=self.stop_requested,
                                                    minute_seconds=self.minute_seconds)  # fmt: skip
        for remote in self.files:
            if await sources.check_ready(sftp, source, remote, self.stop_requested):
                await self.reporter.log(f"ready file of {remote.name} appeared")
            await self.reporter.log(f"file found: {remote.path} ({remote.size} bytes)", size=remote.size)
        if self.decrypt is not None:
            await self._decrypt(sftp)
        self.bytes_total = sum(f.size for f in self.files)
        self.skip = await partner_files.skips_empty(self._bytes(sftp), source, self.spec.format, self.files, self.chunk_bytes,
                                                    self.reporter)  # fmt: skip

    async def records(
        self,
        sftp: SftpSession,
        table: TableRecord,
        tally: Tally,
        on_raw: Callable[[int], None],
        *,
        announce: bool,
    ) -> AsyncIterator[tuple[int, list[CsvRecord], ColumnPlan]]:
        """Data records with the column plan of their file (header rows consumed here)."""
        plan: ColumnPlan | None = None
        lookups: dict[int, str] = {}
        for_file = -1
        async for piece in self._pieces(sftp, on_raw):
            records = piece.records
            tally.skipped += piece.blank  # blank lines: counted apart, not read (again each pass)
            if piece.header:
                for_file = piece.file
                if not records:
                    raise BadFile(f"{self.file_name(piece.file)} is empty: no header row")
                plan, lookups = await self._plan(records[0], table, announce=announce and piece.file == 0)
                if self.spec.format.header or self.delivery is not None:
                    records = records[1:]
            assert plan is not None and for_file == piece.file
            if self.delivery is not None:
                records = await asyncio.to_thread(feed.translate_lookups, self.delivery, records, lookups)
            yield piece.file, records, plan

    def mapped(self, records: list[CsvRecord], plan: ColumnPlan) -> list[Mapped]:
        """Rows (or rejections) and texts of a piece's records: CPU only, run off the event loop."""
        return [(r, map_record(r, plan), self._record_text(r.values)) for r in records]

    def file_name(self, file_no: int) -> str:
        if self.delivery is not None:
            return self.delivery.data[file_no].name
        return self.files[file_no].name

    def source_path(self, sftp: SftpSession, file_no: int) -> str:
        """Where a file's rejects file goes beside: the file, or a delivery's manifest."""
        if self.delivery is not None:
            return sources.relative(sftp, self.delivery.manifest.path)
        return sources.relative(sftp, self.files[file_no].path)

    async def _pieces(
        self, sftp: SftpSession, on_raw: Callable[[int], None]
    ) -> AsyncIterator[sources.Parsed]:
        if self.delivery is not None:
            async for piece in feed.hit_pieces(sftp, self.delivery, self.chunk_bytes, on_raw, self.limits):
                yield piece
            return
        source = self.spec.source
        assert isinstance(source, SftpSource)
        for file_no, remote in enumerate(self.files):
            compression = sources.compression_of(remote.path, source.compression)
            chunks = sources.decoded_chunks(self._bytes(sftp), remote, compression, self.chunk_bytes, on_raw,
                                            self.limits)  # fmt: skip
            async for piece in sources.csv_pieces(chunks, self.spec.format, file_no, self.limits):
                yield piece

    async def _decrypt(self, sftp: SftpSession) -> None:
        """Each file decrypted (and its signature verified) whole into the spool before any is read: a
        tampered file or a bad signature fails the run before a row is parsed, and nothing is loaded."""
        assert self.decrypt is not None
        self.spool = spool = Spool(self.spool_dir)
        verified = " and its signature verified" if self.decrypt.verify_with is not None else ""
        for i, remote in enumerate(self.files):
            plain = await spool.decrypt(remote, sftp.read_chunks(remote, self.chunk_bytes), self.decrypt)
            self.files[i] = plain
            await self.reporter.log(f"decrypted {remote.name}{verified}: {plain.size} bytes", size=plain.size)

    def _bytes(self, sftp: SftpSession) -> ByteSource:
        return sftp if self.spool is None else self.spool

    def close(self) -> None:
        """Removes the spool of decrypted files."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    async def _plan(
        self, first: CsvRecord, table: TableRecord, *, announce: bool
    ) -> tuple[ColumnPlan, dict[int, str]]:
        by_header = self.spec.format.header or self.delivery is not None
        header = first.values if by_header else [str(i + 1) for i in range(len(first.values))]
        plan = plan_columns(header, self.spec.mapping, mappable_fields(self.spec, table))
        lookups: dict[int, str] = {}
        if self.delivery is not None:
            for position, _ in plan.positions:
                name = header[position]
                if name in self.delivery.lookups:
                    lookups[position] = name
        if announce:
            await self.reporter.log(f"header read: {len(header)} columns", columns=",".join(header)[:500])
        return plan, lookups

    def _record_text(self, values: list[str]) -> str:
        """The record as a line of its file, kept with a reject (the rejects API shows it)."""
        if self.delivery is not None:
            return hit_record_text(values)
        return record_text(values, self.spec.format.delimiter, self.spec.format.quote)
