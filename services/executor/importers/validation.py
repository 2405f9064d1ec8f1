"""The validation pass: the whole source parsed and validated and nothing written, so that count files
and the reject guard decide before the load touches the table. The guards' verdicts are logged here,
whichever way they go, by the pass and by an overwrite's swap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.executor.domain import ColumnPlan, CsvRecord, Rejection, Tally, map_record
from services.executor.domain.guards import GuardVerdict, count_file_check, reject_guard
from services.executor.errors import RunStopped
from services.executor.importers import sources
from services.executor.importers.reader import SourceReader
from services.executor.importers.targets import Target
from services.executor.reporting import RunReporter
from services.executor.sftp import SftpSession
from shared.catalog_records import TableRecord
from shared.contracts.jobs import SftpSource


async def validation_pass(
    sftp: SftpSession,
    source: SourceReader,
    table: TableRecord,
    target: Target,
    *,
    tally: Tally,
    reporter: RunReporter,
    stop_requested: Callable[[], bool],
) -> None:
    read = rejected = tally.skipped = 0
    per_file: dict[int, int] = {}
    async for file_no, records, plan in source.records(sftp, table, tally, lambda n: None, announce=False):
        per_file[file_no] = per_file.get(file_no, 0) + len(records)
        read += len(records)
        rejected += await asyncio.to_thread(_rejected_count, records, plan, target)
        if stop_requested():
            raise RunStopped
    tally.read, tally.rejected = read, rejected  # what a run refused here reports
    spec = source.spec
    if isinstance(spec.source, SftpSource) and spec.source.count_file:
        for file_no, remote in enumerate(source.files):
            expected = await sources.expected_count(sftp, remote)
            await reporter.log(count_file_check(remote.name, expected, per_file.get(file_no, 0)))
    await check_rejects(reporter, spec.guards.max_reject_percent, rejected, read)


async def check_rejects(reporter: RunReporter, limit: float | None, rejected: int, read: int) -> None:
    """The `max_reject_percent` guard, when the job sets one."""
    if limit is not None:
        await enforce(reporter, reject_guard(rejected, read, limit))


async def enforce(reporter: RunReporter, verdict: GuardVerdict) -> None:
    await reporter.log(verdict.summary, guard=verdict.guard, percent=round(verdict.percent, 2))
    verdict.enforce()


def _rejected_count(records: list[CsvRecord], plan: ColumnPlan, target: Target) -> int:
    """Records of a piece the load would reject (CPU only: the pass runs it in a thread)."""
    rows = (map_record(record, plan) for record in records)
    return sum(isinstance(row, Rejection) or target.key(row) is None for row in rows)
