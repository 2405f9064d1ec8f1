"""Import sources on SFTP: which files (path or glob, newest or all), ready and count files, decompression.

Every reader yields `Parsed` pieces: CSV records of one file with its number, so rows keep the
(file, line) position used for rejects, resumption and idempotent appends.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from services.executor.domain import CsvRecord, CsvSplitter
from services.executor.domain.csvsplit import MAX_RECORD_LENGTH
from services.executor.errors import BadFile, RunStopped, SourceRefused
from services.executor.importers import zipped
from services.executor.pgp_files import plain_name
from services.executor.sftp import GLOB_CHARS, ByteSource, RemoteFile, SftpSession
from shared.contracts.jobs import CsvFormat, SftpSource

RATIO_GRACE_BYTES = 1 << 20  # the ratio is checked once this much is decompressed (tiny files may exceed it)
MARKER_SUFFIXES = (".ready", ".count", ".rejects.csv", ".part")


@dataclass(frozen=True)
class SourceLimits:
    """Bounds on what a source file may decompress to (EXECUTOR_MAX_* settings)."""

    max_ratio: int = 200  # decompressed bytes per compressed byte, beyond which a file is refused (bombs)
    max_decompressed_bytes: int = 64 << 30
    max_record_length: int = MAX_RECORD_LENGTH  # characters of one CSV record or hit-data line


DEFAULT_LIMITS = SourceLimits()


@dataclass(frozen=True)
class Parsed:
    file: int
    records: list[CsvRecord]
    header: bool = False  # the first piece of a file carries its header record first
    blank: int = 0  # blank lines skipped since the previous piece


def compression_of(path: str, configured: str) -> str:
    if configured != "auto":
        return configured
    path = plain_name(path)  # an encrypted file is detected by the name under its .pgp/.gpg/.asc
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
    sftp: ByteSource,
    remote: RemoteFile,
    compression: str,
    chunk_size: int,
    on_raw: Callable[[int], None],
    limits: SourceLimits = DEFAULT_LIMITS,
) -> AsyncIterator[bytes]:
    """The file's content, decompressed as it streams (zip: its member's range, read after the central directory).

    Inflating runs off the event loop, one bounded piece at a time, and the limits are checked on
    every piece: a bomb fails after its first megabytes, not after it has been inflated.
    """
    if compression == "zip":
        async for chunk in _zip_member(sftp, remote, chunk_size, on_raw, limits):
            yield chunk
        return
    stream = GzipStream(remote.name, limits, piece_size=chunk_size * 4) if compression == "gzip" else None
    async for chunk in sftp.read_chunks(remote, chunk_size):
        on_raw(len(chunk))
        if stream is None:
            yield chunk
            continue
        stream.push(chunk)
        while piece := await asyncio.to_thread(stream.pull):
            yield piece
    if stream is not None:
        tail = await asyncio.to_thread(stream.finish)
        if tail:
            yield tail


class GzipStream:
    """Inflates gzip data (concatenated members too) in pieces of at most `piece_size` bytes."""

    def __init__(self, name: str, limits: SourceLimits, *, piece_size: int) -> None:
        self.name = name
        self.piece_size = piece_size
        self.meter = InflationMeter(name, limits)
        self._inflater = _gzip_inflater()
        self._data = b""

    def push(self, data: bytes) -> None:
        self._data += data

    def pull(self) -> bytes:
        """The next piece of output; b"" once the data pushed so far is used up."""
        while self._data:
            data = self._data
            try:
                out = self._inflater.decompress(data, self.piece_size)
            except zlib.error as exc:
                raise BadFile(f"{self.name} is not valid gzip data: {exc}") from exc
            if self._inflater.eof:  # concatenated gzip members
                self._data = self._inflater.unused_data
                if self._data:
                    self._inflater = _gzip_inflater()
            else:
                self._data = self._inflater.unconsumed_tail
            self.meter.consumed(len(data) - len(self._data))
            if out:
                self.meter.produced(len(out))
                return out
        return b""

    def finish(self) -> bytes:
        tail = self._inflater.flush()
        self.meter.produced(len(tail))
        if not self._inflater.eof and self.meter.raw_bytes:
            raise BadFile(f"{self.name} is a truncated gzip file")
        return tail


def _gzip_inflater() -> zlib._Decompress:
    return zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)


class InflationMeter:
    """Counts compressed bytes consumed and bytes produced; refuses a ratio or a size beyond the limits."""

    def __init__(self, name: str, limits: SourceLimits) -> None:
        self.name = name
        self.limits = limits
        self.raw_bytes = 0
        self.out_bytes = 0

    def consumed(self, count: int) -> None:
        self.raw_bytes += count

    def produced(self, count: int) -> None:
        self.out_bytes += count
        limits = self.limits
        if self.out_bytes > limits.max_decompressed_bytes:
            raise BadFile(
                f"{self.name} decompresses to more than {limits.max_decompressed_bytes:,} bytes, "
                "the allowed size"
            )
        if self.out_bytes > RATIO_GRACE_BYTES and self.out_bytes > limits.max_ratio * max(self.raw_bytes, 1):
            raise BadFile(f"{self.name} decompresses beyond the allowed ratio ({limits.max_ratio}:1)")


async def _zip_member(
    sftp: ByteSource,
    remote: RemoteFile,
    chunk_size: int,
    on_raw: Callable[[int], None],
    limits: SourceLimits,
) -> AsyncIterator[bytes]:
    meter = InflationMeter(remote.name, limits)  # the header may lie: what is really produced

    def check_sizes(compressed: int, declared_size: int) -> None:
        declared = InflationMeter(remote.name, limits)  # the header's sizes: refused before inflating
        declared.consumed(compressed)
        declared.produced(declared_size)
        meter.consumed(compressed)

    async for chunk in zipped.zip_member(sftp, remote, chunk_size, on_raw, check_sizes, meter.produced):
        yield chunk


async def csv_pieces(
    chunks: AsyncIterator[bytes], fmt: CsvFormat, file_no: int, limits: SourceLimits = DEFAULT_LIMITS
) -> AsyncIterator[Parsed]:
    """CSV records of a file's chunks, split and parsed off the event loop, in order."""
    splitter = CsvSplitter(fmt, max_record_length=limits.max_record_length)
    first = True
    reported = 0  # blank lines passed on so far

    def parsed(records: list[CsvRecord]) -> Parsed:
        nonlocal reported
        blank, reported = splitter.blank_lines - reported, splitter.blank_lines
        return Parsed(file_no, records, header=first, blank=blank)

    async for chunk in chunks:
        records = await asyncio.to_thread(splitter.feed, chunk)
        if records:
            yield parsed(records)
            first = False
    records = await asyncio.to_thread(splitter.feed, b"", final=True)
    if records or first or splitter.blank_lines > reported:
        yield parsed(records)
