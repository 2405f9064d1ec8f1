"""Files as partners deliver them (docs/partner-files.md): a dated path, a file that is late (`if_missing`),
empty (`on_empty`) or stale (`max_age_hours`), and what becomes of it after the import (`after_import`).

Crash safety of `after_import`: once the load is complete (table written, rejects file written) and
before anything is moved, the run's lease stores `LoadDone` as its checkpoint — the files read and the
counts. A take-over that finds it loads nothing again: it only finishes the moves and reports those
counts. A move is a rename to a name holding the run id, so a file found already there is done.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.executor.domain import Tally
from services.executor.domain.outcomes import Ending
from services.executor.errors import BadFile, RunStopped, SourceRefused
from services.executor.importers import sources
from services.executor.importers.pipeline import Checkpoint
from services.executor.reporting import RunReporter
from services.executor.sftp import GLOB_CHARS, ByteSource, RemoteFile, SftpSession
from shared.contracts.jobs import CsvFormat, RecurringSchedule, SftpSource
from shared.contracts.runs import RunRequestedData, RunStatus, Trigger
from shared.datepaths import parse_path, run_date

COUNTED = ("read", "inserted", "updated", "rejected", "unchanged", "skipped")
MAX_POLL_SECONDS = 30.0  # longest pause between two looks for a late file


def run_moment(data: RunRequestedData) -> datetime:
    """The instant a run's date tokens read: its schedule slot, else when it was requested."""
    moment = data.slot or data.requested_at
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def job_zone(data: RunRequestedData) -> str:
    schedule = data.job.schedule
    return schedule.timezone if isinstance(schedule, RecurringSchedule) else "UTC"


def dated_path(source: SftpSource, data: RunRequestedData) -> str:
    return parse_path(source.path).render(run_date(run_moment(data), job_zone(data)))


async def find_files(
    sftp: SftpSession,
    source: SftpSource,
    reporter: RunReporter,
    *,
    stop_requested: Callable[[], bool],
    minute_seconds: float = 60.0,
) -> list[RemoteFile]:
    """The file(s) of the run's dated path, waited for or replaced by the newest of any date as the job
    says; then refused when older than `max_age_hours`."""
    data = reporter.request.data
    parsed = parse_path(source.path)
    path = dated_path(source, data)
    dated = source.model_copy(update={"path": path})
    if parsed.has_tokens:
        local = run_date(run_moment(data), job_zone(data))
        await reporter.log(f"reading {path} (the run's date: {local:%Y-%m-%d %H:%M} {job_zone(data)})")
    if source.if_missing == "wait" and not await _present(sftp, path):
        await _wait_for(sftp, path, source.wait_minutes, reporter, stop_requested, minute_seconds)
    if source.if_missing == "newest" and not await _present(sftp, path):
        files = [await _newest(sftp, path, parsed.any_date_glob(), reporter)]
    else:
        files = await sources.resolve_files(sftp, dated)
    if source.max_age_hours is not None:
        _refuse_stale(files, source.max_age_hours)
    return files


async def _present(sftp: SftpSession, path: str) -> bool:
    if GLOB_CHARS & set(posixpath.basename(path)):
        return any(not f.name.endswith(sources.MARKER_SUFFIXES) for f in await sftp.glob(path))
    return await sftp.exists(path)


async def _wait_for(
    sftp: SftpSession,
    path: str,
    minutes: int,
    reporter: RunReporter,
    stop_requested: Callable[[], bool],
    minute_seconds: float,
) -> None:
    """Polls with a growing pause (up to `MAX_POLL_SECONDS`), telling each minute waited; a stop (or
    the job's max_duration, which stops the run) ends the wait at once."""
    started = time.monotonic()
    limit = minutes * minute_seconds
    pause, told = minute_seconds / 60, -1
    while True:
        waited = int((time.monotonic() - started) / minute_seconds)
        if waited != told:
            told = waited
            await reporter.log(f"waiting for {path} ({waited} of {minutes} min)", waited_minutes=waited)
        if time.monotonic() - started >= limit:
            raise SourceRefused(f"{path} did not appear within {minutes} min (if_missing: wait)")
        ends = min(time.monotonic() + pause, started + limit)
        while time.monotonic() < ends:
            await asyncio.sleep(min(0.5, max(ends - time.monotonic(), 0)))
            if stop_requested():
                raise RunStopped
        if await _present(sftp, path):
            waited_s = time.monotonic() - started
            await reporter.log(f"{path} appeared after {waited_s / minute_seconds:.1f} min")
            return
        pause = min(pause * 2, MAX_POLL_SECONDS * minute_seconds / 60)


async def _newest(sftp: SftpSession, path: str, pattern: str, reporter: RunReporter) -> RemoteFile:
    matches = [f for f in await sftp.glob(pattern) if not f.name.endswith(sources.MARKER_SUFFIXES)]
    if not matches:
        raise SourceRefused(f"{path} is missing and no file of another date matches {pattern}")
    newest = max(matches, key=lambda f: (f.mtime, f.name))
    taken = sources.relative(sftp, newest.path)
    await reporter.log(
        f"{path} is missing: taking the newest file of any date, {taken} (modified {_utc(newest.mtime)})",
        file=taken,
    )
    return newest


def _refuse_stale(files: list[RemoteFile], max_age_hours: int) -> None:
    now = time.time()
    for remote in files:
        if now - remote.mtime > max_age_hours * 3600:
            raise SourceRefused(
                f"{remote.name} is stale: last modified {_utc(remote.mtime)}, more than "
                f"{max_age_hours} h ago (max_age_hours)"
            )


def _utc(mtime: float) -> str:
    return f"{datetime.fromtimestamp(mtime, UTC):%Y-%m-%d %H:%M:%S} UTC"


# --- empty files ------------------------------------------------------------------------------------


async def skips_empty(
    sftp: ByteSource,
    source: SftpSource,
    fmt: CsvFormat,
    files: list[RemoteFile],
    chunk_bytes: int,
    reporter: RunReporter,
) -> bool:
    """`on_empty`: True when the run is to end skipped; raises when an empty source fails it."""
    if source.on_empty == "succeed" or not await holds_no_data(sftp, source, fmt, files, chunk_bytes):
        return False
    names = ", ".join(f.name for f in files)
    if source.on_empty == "fail":
        raise BadFile(f"{names} holds no data rows (on_empty: fail)")
    await reporter.log(f"{names} holds no data rows: the run is skipped, no table touched (on_empty: skip)")
    return True


async def holds_no_data(
    sftp: ByteSource, source: SftpSource, fmt: CsvFormat, files: list[RemoteFile], chunk_bytes: int
) -> bool:
    """Whether no file has a data row (a header-only file is empty): reads each up to its first one."""
    for file_no, remote in enumerate(files):
        compression = sources.compression_of(remote.path, source.compression)
        chunks = sources.decoded_chunks(sftp, remote, compression, chunk_bytes, lambda n: None)
        records = 0
        pieces = sources.csv_pieces(chunks, fmt, file_no)
        try:
            async for piece in pieces:
                records += len(piece.records)
                if records > (1 if fmt.header else 0):
                    return False
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]  # an async generator: stops the reading
    return True


@dataclass
class SkippedOutcome:
    """An import with nothing to import (on_empty: skip): no table touched."""

    tally: Tally

    def ending(self) -> Ending:
        return Ending(RunStatus.SKIPPED)

    def records_processed(self) -> dict[str, int]:
        return {}


# --- after the import -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadDone(Checkpoint):
    """The checkpoint a complete load leaves before its files are moved (see the module's docstring)."""

    files: tuple[str, ...] = ()  # full remote paths
    counts: tuple[tuple[str, int], ...] = ()
    rejects_file: str | None = None

    def to_doc(self) -> dict[str, Any]:  # type: ignore[override]  # not only numbers: a document of its own
        done = {"files": list(self.files), "counts": dict(self.counts), "rejects_file": self.rejects_file}
        return {"load_done": done}

    @classmethod
    def done_in(cls, doc: dict[str, Any] | None) -> LoadDone | None:
        done = (doc or {}).get("load_done")
        if not done:
            return None
        counts = tuple((str(k), int(v)) for k, v in done["counts"].items())
        return cls(files=tuple(done["files"]), counts=counts, rejects_file=done.get("rejects_file"))

    def tally(self) -> Tally:
        counts = dict(self.counts)
        return Tally(read=counts["read"], inserted=counts["inserted"], updated=counts["updated"],
                     rejected=counts["rejected"], unchanged=counts["unchanged"], skipped=counts["skipped"])  # fmt: skip


def done_of(tally: Tally, files: list[RemoteFile], rejects_file: str | None) -> LoadDone:
    counts = tuple((k, int(getattr(tally, k))) for k in COUNTED)
    return LoadDone(files=tuple(f.path for f in files), counts=counts, rejects_file=rejects_file)


def settles_files(source: SftpSource, data: RunRequestedData) -> bool:
    """Whether files are moved or deleted after the run: never by a dry run."""
    return source.after_import != "keep" and data.trigger != Trigger.DRY_RUN


def archived_name(name: str, run_id: str) -> str:
    """`contacts_20261207.csv.gz` → `contacts_20261207.12.7.csv.gz` (the run id before the extensions)."""
    stem, dot, extensions = name.partition(".")
    return f"{stem}.{run_id}{dot}{extensions}" if dot else f"{name}.{run_id}"


async def settle_files(
    sftp: SftpSession, source: SftpSource, done: LoadDone, run_id: str, reporter: RunReporter
) -> None:
    """Archive or delete the files read (and their .ready/.count companions): each step done once, a
    step found done (a take-over after a crash) passed over."""
    companions = [
        s for s, used in ((".ready", source.ready_file != "none"), (".count", source.count_file)) if used
    ]
    for full in done.files:
        if source.after_import == "archive":
            assert source.archive_dir is not None  # the catalog refuses archive without it
            directory = sftp.resolve(source.archive_dir)
            await sftp.make_dirs(directory)
            target = posixpath.join(directory, archived_name(posixpath.basename(full), run_id))
            moved = await _move(sftp, full, target)
            for suffix in companions:
                await _move(sftp, full + suffix, target + suffix)
            shown = sources.relative(sftp, target)
            name = sources.relative(sftp, full)
            await reporter.log(
                f"{name} archived as {shown}" if moved else f"{name} was archived as {shown} already"
            )
        else:
            removed = await sftp.remove_if_exists(full)
            for suffix in companions:
                await sftp.remove_if_exists(full + suffix)
            name = sources.relative(sftp, full)
            await reporter.log(f"{name} deleted" if removed else f"{name} was deleted already")


async def _move(sftp: SftpSession, source: str, target: str) -> bool:
    """True when moved now; False when only the target exists (moved before) or neither does."""
    if not await sftp.exists_full(source):
        return False
    await sftp.rename_full(source, target)
    return True
