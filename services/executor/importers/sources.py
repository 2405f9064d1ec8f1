"""Import sources on SFTP: which files (path or glob, newest or all), ready and count files, decompression.

Every reader yields `Parsed` pieces: CSV records of one file with its number, so rows keep the
(file, line) position used for rejects, resumption and idempotent appends.
"""

from __future__ import annotations

import asyncio
import posixpath
import tempfile
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from services.executor.domain import CsvRecord, CsvSplitter
from services.executor.errors import BadFile, RunStopped, SourceRefused
from services.executor.sftp import GLOB_CHARS, RemoteFile, SftpSession
from shared.contracts.jobs import CsvFormat, SftpSource

MAX_RATIO = 200  # decompressed bytes per compressed byte, beyond which a file is refused (zip bombs)
MIN_BOMB_BYTES = 64 << 20
MARKER_SUFFIXES = (".ready", ".count", ".rejects.csv", ".part")


@dataclass(frozen=True)
class Parsed:
    file: int
    records: list[CsvRecord]
    header: bool = False  # the first piece of a file carries its header record first


def compression_of(path: str, configured: str) -> str:
    if configured != "auto":
        return configured
    if path.endswith((".gz", ".gzip")):
        return "gzip"
    if path.endswith(".zip"):
        return "zip"
    return "none"


async def resolve_files(sftp: SftpSession, source: SftpSource) -> list[RemoteFile]:
    if GLOB_CHARS & set(posixpath.basename(source.path)):
        matches = [f for f in await sftp.glob(source.path) if not f.name.endswith(MARKER_SUFFIXES)]
        if not matches:
            raise SourceRefused(f"no file matches {source.path}")
        if source.pick == "newest":
            return [max(matches, key=lambda f: (f.mtime, f.name))]
        return matches
    return [await sftp.stat(source.path)]


def relative(sftp: SftpSession, full: str) -> str:
    base = posixpath.normpath("/" + sftp.connection.base_dir.strip("/"))
    return posixpath.relpath(full, base)


async def check_ready(
    sftp: SftpSession, source: SftpSource, remote: RemoteFile, stop_requested: Callable[[], bool]
) -> bool:
    """True when a ready file was waited for; raises when it is required and absent."""
    if source.ready_file == "none":
        return False
    marker = relative(sftp, remote.path) + ".ready"
    if await sftp.exists(marker):
        return False
    if source.ready_file == "required":
        raise SourceRefused(f"ready file {marker} is missing")
    deadline = time.monotonic() + source.ready_wait_seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
        if stop_requested():
            raise RunStopped
        if await sftp.exists(marker):
            return True
    raise SourceRefused(f"ready file {marker} did not appear within {source.ready_wait_seconds}s")


async def expected_count(sftp: SftpSession, remote: RemoteFile) -> int:
    marker = relative(sftp, remote.path) + ".count"
    if not await sftp.exists(marker):
        raise SourceRefused(f"count file {marker} is missing")
    text = (await sftp.read_bytes(marker, 1024)).decode("ascii", errors="replace").strip()
    try:
        return int(text.split()[0]) if text else -1
    except ValueError:
        raise BadFile(f"count file {marker} does not hold a number: {text[:40]!r}") from None


async def decoded_chunks(
    sftp: SftpSession, remote: RemoteFile, compression: str, chunk_size: int, on_raw: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """The file's content, decompressed as it streams (zip: spooled to a local temporary file first)."""
    if compression == "zip":
        async for chunk in _zip_member(sftp, remote, chunk_size, on_raw):
            yield chunk
        return
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32) if compression == "gzip" else None
    raw_total = out_total = 0
    async for chunk in sftp.read_chunks(remote, chunk_size):
        on_raw(len(chunk))
        if inflater is None:
            yield chunk
            continue
        raw_total += len(chunk)
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, chunk_size * 4)
            except zlib.error as exc:
                raise BadFile(f"{remote.name} is not valid gzip data: {exc}") from exc
            out_total += len(out)
            if out_total > MIN_BOMB_BYTES and out_total > MAX_RATIO * raw_total:
                raise BadFile(f"{remote.name} decompresses beyond the allowed ratio ({MAX_RATIO}:1)")
            if out:
                yield out
            if inflater.eof:  # concatenated gzip members
                data = inflater.unused_data
                if data:
                    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
            else:
                data = inflater.unconsumed_tail
    if inflater is not None:
        tail = inflater.flush()
        if tail:
            yield tail
        if not inflater.eof and raw_total:
            raise BadFile(f"{remote.name} is a truncated gzip file")


async def _zip_member(
    sftp: SftpSession, remote: RemoteFile, chunk_size: int, on_raw: Callable[[int], None]
) -> AsyncIterator[bytes]:
    with tempfile.TemporaryFile() as spool:
        async for chunk in sftp.read_chunks(remote, chunk_size):
            on_raw(len(chunk))
            await asyncio.to_thread(spool.write, chunk)
        try:
            archive = zipfile.ZipFile(spool)
        except zipfile.BadZipFile as exc:
            raise BadFile(f"{remote.name} is not a zip archive: {exc}") from exc
        with archive:
            members = [
                m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX")
            ]
            if len(members) != 1:
                raise BadFile(f"{remote.name} must hold exactly one file, it holds {len(members)}")
            member = members[0]
            if member.file_size > max(MIN_BOMB_BYTES, MAX_RATIO * max(member.compress_size, 1)):
                raise BadFile(f"{remote.name} decompresses beyond the allowed ratio ({MAX_RATIO}:1)")
            with archive.open(member) as handle:
                while chunk := await asyncio.to_thread(handle.read, chunk_size):
                    yield chunk


async def csv_pieces(chunks: AsyncIterator[bytes], fmt: CsvFormat, file_no: int) -> AsyncIterator[Parsed]:
    splitter = CsvSplitter(fmt)
    first = True
    async for chunk in chunks:
        records = splitter.feed(chunk)
        if records:
            yield Parsed(file_no, records, header=first)
            first = False
    records = splitter.feed(b"", final=True)
    if records or first:
        yield Parsed(file_no, records, header=first)
