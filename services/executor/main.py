"""Executor app factory: wiring only."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from services.executor.audience import MongoAudienceStore
from services.executor.config import ExecutorSettings
from services.executor.exporters.run import ExportSettings
from services.executor.importers.context import ImportSettings
from services.executor.importers.sources import SourceLimits
from services.executor.pgp_files import remove_orphaned_spools
from services.executor.repository import (
    MongoCatalogReader,
    MongoLeaseStore,
    MongoRejectStore,
    MongoWatermarks,
)
from services.executor.service import ExecutionSettings, ExecutorService
from services.executor.sftp import use_pool
from services.executor.ssh_pool import SshPool
from services.executor.subscribers import register_subscribers
from services.executor.table_writers import MongoTableWriters
from shared.contracts import RunFinished, RunLog, RunProgress, RunStarted
from shared.metrics import executor_metrics
from shared.runtime import ServiceRuntime, create_http_app
from shared.secrets import secret_box
from shared.settings import CommonSettings
from shared.tasks import PeriodicTask

LEASE_PRUNE_SECONDS = 3600.0  # finished leases go after EXECUTOR_FINISHED_LEASE_DAYS; hourly is soon enough


def build_app(common: CommonSettings | None = None, settings: ExecutorSettings | None = None) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or ExecutorSettings()
    runtime = ServiceRuntime.create("executor", common, prefetch=settings.concurrency)
    leases = MongoLeaseStore(
        runtime.mongo, runtime.db_name, settings.lease_seconds, settings.finished_lease_days
    )
    rejects = MongoRejectStore(runtime.mongo, runtime.db_name)
    writers = MongoTableWriters(runtime.mongo, runtime.db_name, settings.lease_seconds)
    service = ExecutorService(
        _execution_settings(settings),
        leases=leases,
        writers=writers,
        catalog=MongoCatalogReader(runtime.mongo, common.database("catalog")),
        store=MongoAudienceStore(runtime.mongo, common.audience_database),
        rejects=rejects,
        watermarks=MongoWatermarks(runtime.mongo, runtime.db_name),
        publisher=runtime.publisher,
        secrets=secret_box(common),
        metrics=executor_metrics(runtime.metrics.registry),
    )
    register_subscribers(runtime, service, settings.executor_id)
    runtime.documents_publishing(RunStarted, RunLog, RunProgress, RunFinished)
    reaper = PeriodicTask("lease-reaper", settings.reaper_interval, service.take_over_expired)
    pruner = PeriodicTask("lease-pruner", LEASE_PRUNE_SECONDS, leases.prune_finished)

    async def finish_in_flight() -> None:
        await service.shutdown(grace=common.graceful_timeout)

    runtime.on_start += [
        leases.ensure_indexes, rejects.ensure_indexes, writers.ensure_indexes,
        partial(remove_orphaned_spools, settings.spool_dir), reaper.start, pruner.start,
    ]  # fmt: skip
    runtime.on_drain += [reaper.stop, pruner.stop, finish_in_flight]
    _pool_ssh_connections(runtime, settings)
    return create_http_app(runtime, title="Connect executor")


def _pool_ssh_connections(runtime: ServiceRuntime, settings: ExecutorSettings) -> None:
    """SSH connections outlive a run while the service runs (EXECUTOR_SSH_IDLE_SECONDS); all closed at stop."""
    pool = SshPool(settings.ssh_idle_seconds, registry=runtime.metrics.registry)
    replaced: list[SshPool] = []

    async def install() -> None:
        replaced.append(use_pool(pool))

    async def close() -> None:  # on_stop comes after the drain: no run is using a connection any more
        await pool.close()
        use_pool(replaced.pop() if replaced else SshPool())

    runtime.on_start.append(install)
    runtime.on_stop.append(close)


def _execution_settings(settings: ExecutorSettings) -> ExecutionSettings:
    return ExecutionSettings(
        executor_id=settings.executor_id,
        concurrency=settings.concurrency,
        lease_seconds=settings.lease_seconds,
        progress_interval=settings.progress_interval,
        max_attempts=settings.max_attempts,
        retry_backoff=settings.retry_backoff,
        log_flush_seconds=settings.log_flush_seconds,
        imports=ImportSettings(
            batch_size=settings.batch_size,
            read_chunk_bytes=settings.read_chunk_bytes,
            max_in_flight=settings.writes_in_flight,
            spool_dir=settings.spool_dir,
            limits=SourceLimits(
                max_ratio=settings.max_decompression_ratio,
                max_decompressed_bytes=settings.max_decompressed_bytes,
                max_record_length=settings.max_record_length,
            ),
        ),
        exports=ExportSettings(
            batch_size=settings.batch_size,
            rest_max_attempts=settings.rest_max_attempts,
            rest_backoff=settings.rest_backoff,
        ),
    )
