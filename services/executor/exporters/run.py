"""The export use case: a list (filtered, joined with profile extension fields) or a table → CSV on SFTP
or a REST push. Incremental exports read rows whose `_cx_at` (set by every import write) is at or after
the job's watermark: the start of its last successful run, advanced only when a run succeeds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.executor.audience import CHANGED_AT, MongoAudienceStore
from services.executor.domain import Tally
from services.executor.domain.export import (
    CsvEncoder,
    cell,
    matches,
    pushdown_query,
    render_path,
    split_extension_field,
    typed,
)
from services.executor.domain.outcomes import ExportOutcome
from services.executor.errors import DestinationFailed, RunStopped
from services.executor.exporters.destinations import RestPusher, write_csv_file
from services.executor.pgp_files import encrypt_keys, plain_name
from services.executor.ports import CatalogReader
from services.executor.reporting import RunReporter
from services.executor.repository import MongoWatermarks
from services.executor.sftp import open_sftp
from shared.catalog_records import TableKind, TableRecord
from shared.contracts.jobs import ExportSpec, FieldType, ListExportSource, RestDestination, SftpDestination
from shared.contracts.runs import LogLevel
from shared.errors import PermanentError
from shared.secrets import SecretBox


@dataclass(frozen=True)
class ExportSettings:
    batch_size: int = 1000
    rest_max_attempts: int = 5
    rest_backoff: float = 0.5


class ExportRun:
    """One attempt of an export (a `RunWork`, ports.py)."""

    def __init__(
        self,
        spec: ExportSpec,
        reporter: RunReporter,
        *,
        job_id: int,
        catalog: CatalogReader,
        store: MongoAudienceStore,
        watermarks: MongoWatermarks,
        secrets: SecretBox,
        settings: ExportSettings,
        stop_requested: Callable[[], bool],
        on_bytes: Callable[[str, int], None] = lambda direction, count: None,
    ) -> None:
        self.spec = spec
        self.reporter = reporter
        self.job_id = job_id
        self.catalog = catalog
        self.store = store
        self.watermarks = watermarks
        self.secrets = secrets
        self.settings = settings
        self.stop_requested = stop_requested
        self.on_bytes = on_bytes
        self.tally = Tally()
        self.bytes_total: int | None = None  # an export does not know the size of what it reads
        self.types: dict[str, FieldType] = {}

    async def run(self) -> ExportOutcome:
        source = self.spec.source
        table = await self.catalog.table(source.table)
        if isinstance(source, ListExportSource) and table.kind != TableKind.LIST:
            raise PermanentError(f"table {table.name} is not a list")
        extensions = await self._extensions(table)
        columns = self._columns(table, extensions)
        self.types = _field_types(table, extensions, self.spec.source)
        started = datetime.now(UTC)
        since = await self.watermarks.get(self.job_id) if source.incremental else None
        if source.incremental:
            await self.reporter.log(
                f"incremental: records changed since {since.isoformat() if since else 'ever (first run)'}"
            )
        rows = self._rows(table, extensions, since)
        destination = self.spec.destination
        connection = await self.catalog.connection(destination.connection_id)
        failures: list[str] = []
        if isinstance(destination, SftpDestination):
            target = await self._to_sftp(destination, connection, columns, rows)
        else:
            target, failures = await self._to_rest(destination, connection, columns, rows)
        if not failures:
            await self.watermarks.advance(self.job_id, started, self.reporter.run_id)
        return ExportOutcome(self.tally, target, failures)

    async def _extensions(self, table: TableRecord) -> dict[str, TableRecord]:
        source = self.spec.source
        if not isinstance(source, ListExportSource):
            return {}
        names = {e.table for e in source.extension_fields}
        for condition in source.filter.conditions if source.filter else ():
            if (split := split_extension_field(condition.field)) is not None:
                names.add(split[0])
        found = {}
        for name in sorted(names):
            extension = await self.catalog.table(name)
            if extension.kind != TableKind.PROFILE_EXTENSION or extension.parent_list != table.name:
                raise PermanentError(f"{name} is not a profile extension table of {table.name}")
            found[name] = extension
        return found

    def _columns(self, table: TableRecord, extensions: dict[str, TableRecord]) -> list[str]:
        if self.spec.fields:
            return list(self.spec.fields)
        columns = [f.name for f in table.fields]
        source = self.spec.source
        if isinstance(source, ListExportSource):
            for joined in source.extension_fields:
                columns += [f for f in joined.fields if f not in columns]
        return columns

    async def _rows(
        self, table: TableRecord, extensions: dict[str, TableRecord], since: datetime | None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        source = self.spec.source
        audience = source.filter if isinstance(source, ListExportSource) else None
        joined = source.extension_fields if isinstance(source, ListExportSource) else ()
        query = pushdown_query(audience)
        if since is not None and not extensions:
            query[CHANGED_AT] = {"$gte": since}
        sort = ("RIID_",) if table.kind != TableKind.CUSTOM else table.primary_key
        async for batch in self.store.scan(
            table.collection, query, sort=sort, batch_size=self.settings.batch_size
        ):
            if self.stop_requested():
                raise RunStopped
            changed = [bool(since and _at(doc) >= since) for doc in batch]
            if extensions:
                riids = [doc.get("RIID_") for doc in batch]
                for name, extension in extensions.items():
                    found = {
                        d["RIID_"]: d for d in await self.store.find_in(extension.collection, "RIID_", riids)
                    }
                    wanted = next((j.fields for j in joined if j.table == name), ())
                    for i, doc in enumerate(batch):
                        ext = found.get(doc.get("RIID_"))
                        if ext is None:
                            continue
                        changed[i] = changed[i] or bool(since and _at(ext) >= since)
                        for field_name, value in ext.items():
                            doc[f"{name}.{field_name}"] = value
                            if field_name in wanted:
                                doc.setdefault(field_name, value)
            selected = [
                doc for i, doc in enumerate(batch)
                if (since is None or changed[i]) and (audience is None or matches(doc, audience))
            ]  # fmt: skip
            for doc in selected:
                for name, value in doc.items():
                    doc[name] = typed(value, self.types.get(name))
            self.tally.read += len(selected)
            if selected:
                yield selected

    async def _to_sftp(
        self, destination: SftpDestination, connection: Any, columns: list[str], rows: Any
    ) -> str:
        now = datetime.now(UTC)
        path = render_path(
            destination.path_template, now=now, run_id=self.reporter.run_id, job_id=self.job_id
        )
        if destination.gzip and not path.endswith(".gz"):
            path += ".gz"
        encrypt = None
        if destination.pgp is not None:  # keys checked now: a key problem fails the run before the upload
            encrypt = await encrypt_keys(self.catalog, self.secrets, destination.pgp)
            if plain_name(path) == path:
                path += ".asc" if destination.pgp.armor else ".pgp"
        async with open_sftp(connection, self.secrets) as sftp:
            sftp.on_bytes = self.on_bytes
            await self.reporter.log(
                f"connected to {connection.host}:{connection.port}", connection=connection.name
            )
            encoder = CsvEncoder(self.spec.format, columns)
            full, count = await write_csv_file(
                sftp,
                path,
                encoder,
                rows,
                header=self.spec.format.header,
                gzip=destination.gzip,
                encrypt=encrypt,
            )
            self.tally.inserted = count
            await self.reporter.log(f"{count} record(s) written to {full}", path=full, records=count)
            if destination.ready_file:
                ready = await sftp.write_file(f"{path}.ready", b"")
                await self.reporter.log(f"ready file written: {ready}")
        return full

    async def _to_rest(
        self, destination: RestDestination, connection: Any, columns: list[str], rows: Any
    ) -> tuple[str, list[str]]:
        async def log(message: str) -> None:
            await self.reporter.log(message, LogLevel.WARNING)

        pusher = RestPusher(
            connection, destination, self.secrets,
            max_attempts=self.settings.rest_max_attempts, backoff=self.settings.rest_backoff,
            log=log, stop_requested=self.stop_requested,
        )  # fmt: skip
        await self.reporter.log(f"pushing to {pusher.url} in batches of {destination.batch_size}")
        result = await pusher.push(columns, rows, _rest_cell)
        self.tally.inserted = result.accepted
        self.tally.rejected = result.rejected
        await self.reporter.log(
            f"{result.accepted} record(s) accepted by {destination.list_name}, {result.rejected} not "
            f"({len(result.failed_batches)} failed batch(es))"
        )
        if result.sent and not result.accepted:  # nothing arrived: a failure, not a partial success
            raise DestinationFailed(
                f"the destination refused all {result.sent} records: {result.first_refusal or 'no reason given'}"
            )
        return pusher.url, result.failed_batches


def _field_types(table: TableRecord, extensions: dict[str, TableRecord], source: Any) -> dict[str, FieldType]:
    """The type of each column a row can have: the table's fields, then the joined extension fields."""
    types = {f.name: f.type for f in table.fields}
    for joined in source.extension_fields if isinstance(source, ListExportSource) else ():
        for f in extensions[joined.table].fields:
            if f.name in joined.fields:
                types.setdefault(f.name, f.type)
    return types


def _at(doc: dict[str, Any]) -> datetime:
    value = doc.get(CHANGED_AT)
    if not isinstance(value, datetime):
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _rest_cell(value: Any) -> str:
    text = cell(value)
    return text[1:] if text.startswith("'") and not (str(value).startswith("'")) else text
