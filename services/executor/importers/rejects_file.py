"""The rejects files: beside each source file that had rejected records (a delivery: its manifest),
`<file>.<run id>.rejects.csv` with the line, field and reason of each, streamed from the reject store."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable

from services.executor.domain import rejects_path
from services.executor.importers.reader import SourceReader
from services.executor.reporting import RunReporter
from services.executor.repository import MongoRejectStore
from services.executor.sftp import SftpSession

PIECE_BYTES = 256 * 1024  # written to SFTP in pieces of about this size


async def write_rejects_files(
    sftp: SftpSession, source: SourceReader, rejects: MongoRejectStore, run_id: str, reporter: RunReporter
) -> str | None:
    """The path of the first file written."""
    first: str | None = None
    for file_no in await rejects.files(run_id):
        path = rejects_path(source.source_path(sftp, file_no), run_id)

        async def produce(write: Callable[[bytes], Awaitable[None]], file_no: int = file_no) -> None:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\r\n")
            writer.writerow(["line", "field", "reason"])
            async for r in rejects.iterate(run_id, file_no):
                writer.writerow([r.line, r.field, r.reason])
                if buffer.tell() > PIECE_BYTES:
                    await write(buffer.getvalue().encode())
                    buffer.seek(0)
                    buffer.truncate()
            await write(buffer.getvalue().encode())

        written = await sftp.write_stream(path, produce)
        count = await rejects.count(run_id, file_no)
        await reporter.log(f"{count} rejected record(s) written to {written}", path=written)
        first = first or written
    return first
