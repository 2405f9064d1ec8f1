"""The import use case: SFTP file(s) or a partner-feed delivery → validated rows → a list or table.

Order of a run: connect; find the file(s) and check ready/count files (or the feed's manifest, MD5
digests and record counts: `reader.py`); when a guard or a count file needs it, a validation pass that
writes nothing (`validation.py`); then the load, with parsing overlapping bounded writes (`load.py`); an
overwrite loads a new collection and swaps it in only after its guards pass (`overwrite.py`); finally
the rejects file (`rejects_file.py`).
"""

from __future__ import annotations

from collections.abc import Callable

from services.executor.audience import MongoAudienceStore
from services.executor.domain import Tally
from services.executor.domain.guards import is_overwrite, needs_validation_pass
from services.executor.domain.outcomes import ImportOutcome
from services.executor.domain.targets import mapped_fields, require_kind
from services.executor.importers.context import ImportContext, ImportSettings
from services.executor.importers.dry_store import DryRunStore
from services.executor.importers.lists import ListTarget
from services.executor.importers.load import Load
from services.executor.importers.overwrite import Staging
from services.executor.importers.partner_files import (
    LoadDone,
    SkippedOutcome,
    done_of,
    settle_files,
    settles_files,
)
from services.executor.importers.pipeline import Checkpoint
from services.executor.importers.reader import SourceReader
from services.executor.importers.rejects_file import write_rejects_files
from services.executor.importers.targets import (
    CustomAppendTarget,
    CustomMergeTarget,
    ProfileExtensionTarget,
    Target,
)
from services.executor.importers.validation import validation_pass
from services.executor.pgp_files import decrypt_keys
from services.executor.ports import CatalogReader, WorkOutcome
from services.executor.reporting import RunReporter
from services.executor.repository import MongoRejectStore
from services.executor.sftp import SftpSession, open_sftp
from shared.catalog_records import ConnectionRecord, TableKind, TableRecord
from shared.contracts.jobs import ImportSpec, SftpSource
from shared.contracts.jobs import ListTarget as ListTargetSpec
from shared.contracts.jobs import ProfileExtensionTarget as ProfileExtensionSpec
from shared.contracts.runs import MAX_FIRST_REJECTS, RejectSample
from shared.errors import PermanentError
from shared.secrets import SecretBox

__all__ = ["ImportContext", "ImportRun", "ImportSettings"]  # the settings and the context live in `context`


class ImportRun:
    """One attempt of an import (a `RunWork`, ports.py)."""

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
        # A dry run reads the tables through a store that keeps its writes in memory (`dry_store.py`).
        self.store = DryRunStore(store) if context.dry_run else store
        self.rejects = rejects
        self.secrets = secrets
        self.settings = settings
        self.stop_requested = stop_requested
        self.context = context
        self.tally = Tally()
        self.source = SourceReader(spec, reporter, chunk_bytes=settings.read_chunk_bytes,
                                   limits=settings.limits, stop_requested=stop_requested,
                                   minute_seconds=settings.wait_minute_seconds,
                                   spool_dir=settings.spool_dir)  # fmt: skip
        self._staging: Staging | None = None  # an overwrite's new collection

    @property
    def bytes_total(self) -> int | None:
        return self.source.bytes_total

    async def run(self) -> WorkOutcome:
        if (done := LoadDone.done_in(self.context.checkpoint_doc)) is not None:
            return await self._settle_after_take_over(done)
        table = await self.catalog.table(self.spec.target.table)
        connection = await self.catalog.connection(self.spec.source.connection_id)
        target = await self._target(table)
        source = self.spec.source
        if isinstance(source, SftpSource) and source.pgp is not None:
            self.source.decrypt = await decrypt_keys(self.catalog, self.secrets, source.pgp)
        try:
            return await self._run(table, connection, target)
        finally:
            self.source.close()  # the spool of decrypted files, also after a failure

    async def _run(self, table: TableRecord, connection: ConnectionRecord, target: Target) -> WorkOutcome:
        async with open_sftp(connection, self.secrets) as sftp:
            sftp.on_bytes = self.context.on_bytes
            await self.reporter.log(
                f"connected to {connection.host}:{connection.port}", connection=connection.name
            )
            await self.source.find(sftp)
            if self.source.skip:
                return await self._skipped()
            if needs_validation_pass(self.spec):
                await validation_pass(sftp, self.source, table, target, tally=self.tally,
                                      reporter=self.reporter, stop_requested=self.stop_requested)  # fmt: skip
            try:
                await self._hold_table(table)
                await self._load(target).run(sftp, table)
                if self._staging is not None:
                    await self._staging.swap_in(self.tally, self.rejects, self.reporter, self.spec.guards,
                                                stop_requested=self.stop_requested)  # fmt: skip
            finally:
                if self._staging is not None:  # failed or stopped: the old table stays, the new one goes
                    await self._staging.discard(self.tally)
            await self._finish_counts()
            if self.context.dry_run:  # no rejects file: the first rejects go in the run's result
                return ImportOutcome(self.tally, None, await self._first_rejects())
            rejects_file = await self._write_rejects(sftp)
            await self._settle_files(sftp, rejects_file)
        return ImportOutcome(self.tally, rejects_file)

    async def _target(self, table: TableRecord) -> Target:
        spec, store, tag = self.spec.target, self.store, self.context.tag
        mapped = mapped_fields(self.spec)
        if isinstance(spec, ListTargetSpec):
            require_kind(table, TableKind.LIST)
            await store.ensure_table(table, match_columns=spec.match_columns)
            return ListTarget(store, table, tag, match_columns=spec.match_columns,
                              insert_on_no_match=spec.insert_on_no_match,
                              replace_all=spec.update_on_match == "replace_all",
                              mapped_fields=mapped, redo_after=self._redo_after)  # fmt: skip
        if isinstance(spec, ProfileExtensionSpec):
            require_kind(table, TableKind.PROFILE_EXTENSION)
            if not table.parent_list:
                raise PermanentError(f"profile extension table {table.name} has no parent list")
            parent = await self.catalog.table(table.parent_list)
            await store.ensure_table(parent, match_columns=(spec.match_column,))
            await store.ensure_table(table)
            return ProfileExtensionTarget(store, table, tag, parent=parent, match_column=spec.match_column,
                                          mapped=mapped, redo_after=self._redo_after)  # fmt: skip
        require_kind(table, TableKind.CUSTOM)
        if spec.mode == "append":
            await store.ensure_table(table)
            return CustomAppendTarget(store, table, self.context.run_id, tag)
        if spec.mode == "overwrite":
            self._staging = Staging(store, table, self.context.run_id)
            await self._staging.prepare()
            self.context.resume = None  # an overwrite always loads its new collection from the start
            return CustomMergeTarget(store, table, tag, collection=self._staging.collection, mapped=mapped)
        await store.ensure_table(table)
        return CustomMergeTarget(store, table, tag, mapped=mapped, redo_after=self._redo_after)

    def _redo_after(self) -> tuple[int, int]:
        """Rows this run wrote after this position in an attempt that ended are not counted yet."""
        resume = self.context.resume
        return (resume.file, resume.line) if resume is not None else (-1, 0)

    def _load(self, target: Target) -> Load:
        return Load(self.source, target, tally=self.tally, reporter=self.reporter, rejects=self.rejects,
                    context=self.context, settings=self.settings, stop_requested=self.stop_requested,
                    checkpointed=not is_overwrite(self.spec))  # fmt: skip

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

    async def _first_rejects(self) -> tuple[RejectSample, ...]:
        """A dry run's first rejects, in file order, each logged; and what the run would have done."""
        tally, target = self.tally, self.spec.target.table
        first = await self.rejects.first(self.context.run_id, MAX_FIRST_REJECTS)
        for r in first:
            await self.reporter.log(
                f"would reject line {r.line} (file {r.file + 1}): {r.field}: {r.reason}",
                line=r.line, file=r.file, field=r.field,
            )  # fmt: skip
        await self.reporter.log(
            f"dry run of {target}: would insert {tally.inserted}, would update {tally.updated}, "
            f"unchanged {tally.unchanged}, would reject {tally.rejected}; nothing was written, no file moved",
            would_insert=tally.inserted, would_update=tally.updated, unchanged=tally.unchanged,
            would_reject=tally.rejected,
        )  # fmt: skip
        return tuple(RejectSample(file=r.file, line=r.line, field=r.field, reason=r.reason) for r in first)

    async def _write_rejects(self, sftp: SftpSession) -> str | None:
        if not self.tally.rejected:
            return None
        return await write_rejects_files(sftp, self.source, self.rejects, self.context.run_id, self.reporter)

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

    # --- partner files (`partner_files.py`): a skipped run, and the files archived or deleted -------------

    async def _skipped(self) -> WorkOutcome:
        if self._staging is not None:  # an overwrite: the table stays as it is
            await self._staging.discard(self.tally)
        return SkippedOutcome(self.tally)

    async def _settle_files(self, sftp: SftpSession, rejects_file: str | None) -> None:
        source = self.spec.source
        if not isinstance(source, SftpSource) or not settles_files(source, self.reporter.request.data):
            return
        done = done_of(self.tally, self.source.files, rejects_file)
        if self.context.save_checkpoint is not None:  # before any move: a take-over only settles the files
            await self.context.save_checkpoint(done)
        await settle_files(sftp, source, done, self.context.run_id, self.reporter)

    async def _settle_after_take_over(self, done: LoadDone) -> WorkOutcome:
        source = self.spec.source
        assert isinstance(source, SftpSource)
        connection = await self.catalog.connection(source.connection_id)
        await self.reporter.log(
            "the load was complete before the take-over: only the files are left to settle"
        )
        async with open_sftp(connection, self.secrets) as sftp:
            await settle_files(sftp, source, done, self.context.run_id, self.reporter)
        self.tally = done.tally()
        return ImportOutcome(self.tally, done.rejects_file)
