"""A zip archive's one member, streamed from SFTP without spooling the archive.

A zip's central directory is at its end: the tail is read (random access over SFTP), parsed by
`zipfile` from a sparse view that holds only the bytes fetched, then the member's local header and
its compressed range are read and inflated piece by piece. Memory and disk stay flat whatever the
archive's size: a chunk in flight, a piece inflated, and the central directory (bounded).
"""

from __future__ import annotations

import asyncio
import bz2
import io
import struct
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from services.executor.errors import BadFile
from services.executor.sftp import ByteSource, RemoteFile
from shared.paths import has_parent_segment

TAIL_BYTES = (
    (1 << 16) + 22 + 20 + 56
)  # the end record with its longest comment, and zip64's locator and record
MAX_DIRECTORY_BYTES = 4 << 20  # what a one-member archive's central directory may span (a few entries)
LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature … name length, extra length
LOCAL_SIGNATURE = b"PK\x03\x04"


class _NeedBytes(Exception):
    """zipfile read before the bytes fetched so far: fetch from `offset` on, then parse again."""

    def __init__(self, offset: int) -> None:
        self.offset = offset


class _SparseTail(io.RawIOBase):
    """The archive as zipfile sees it: its size, and only the tail [base, size) readable."""

    def __init__(self, size: int, base: int, data: bytes) -> None:
        self.size, self.base, self.data, self.position = size, base, data, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(origin + offset, 0)
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        if self.position < self.base:
            raise _NeedBytes(self.position)
        start = self.position - self.base
        end = len(self.data) if size is None or size < 0 else start + size
        out = self.data[start:end]
        self.position += len(out)
        return out


async def zip_member(
    sftp: ByteSource,
    remote: RemoteFile,
    chunk_size: int,
    on_raw: Callable[[int], None],
    check_sizes: Callable[[int, int], None],
    produced: Callable[[int], None],
) -> AsyncIterator[bytes]:
    """The single member's bytes; `check_sizes(compressed, declared)` before inflating, `produced`
    on every piece (the inflation limits)."""
    member = await _find_member(sftp, remote, on_raw)
    header = await sftp.read_range(remote, member.header_offset, member.header_offset + LOCAL_HEADER.size)
    on_raw(len(header))
    if len(header) < LOCAL_HEADER.size or not header.startswith(LOCAL_SIGNATURE):
        raise BadFile(f"{remote.name} cannot be unpacked: bad local file header")
    *_, name_length, extra_length = LOCAL_HEADER.unpack(header)
    start = member.header_offset + LOCAL_HEADER.size + name_length + extra_length
    end = start + member.compress_size
    if end > remote.size:
        raise BadFile(f"{remote.name} cannot be unpacked: the member runs past the end of the archive")
    check_sizes(member.compress_size, member.file_size)
    inflater = _inflater(remote, member)
    unpacked, crc = 0, 0
    async for chunk in sftp.read_chunks(remote, chunk_size, start=start, end=end):
        on_raw(len(chunk))
        inflater.push(chunk)
        while piece := await asyncio.to_thread(_pull, remote, inflater, chunk_size):
            unpacked += len(piece)
            if unpacked > member.file_size:  # the header may lie: never more than it declared
                raise BadFile(
                    f"{remote.name} cannot be unpacked: more data than its header's {member.file_size} bytes"
                )
            crc = zlib.crc32(piece, crc)
            produced(len(piece))
            yield piece
    if not inflater.complete() or unpacked != member.file_size:
        raise BadFile(f"{remote.name} cannot be unpacked: the member is truncated")
    if crc != member.CRC:
        raise BadFile(f"{remote.name} cannot be unpacked: Bad CRC-32 for file {member.filename!r}")


async def _find_member(
    sftp: ByteSource, remote: RemoteFile, on_raw: Callable[[int], None]
) -> zipfile.ZipInfo:
    base = max(remote.size - TAIL_BYTES, 0)
    data = await sftp.read_range(remote, base, remote.size)
    on_raw(len(data))
    while True:
        try:
            with zipfile.ZipFile(_SparseTail(remote.size, base, data)) as archive:
                return single_member(remote, archive)
        except _NeedBytes as need:
            if remote.size - need.offset > MAX_DIRECTORY_BYTES or need.offset >= base:
                raise BadFile(
                    f"{remote.name} cannot be unpacked: its central directory spans more than "
                    f"{MAX_DIRECTORY_BYTES:,} bytes"
                ) from None
            more = await sftp.read_range(remote, need.offset, base)
            on_raw(len(more))
            base, data = need.offset, more + data
        except (zipfile.BadZipFile, struct.error, ValueError) as exc:
            raise BadFile(f"{remote.name} is not a zip archive: {exc}") from exc


def single_member(remote: RemoteFile, archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    members = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX")]
    if len(members) != 1:
        raise BadFile(f"{remote.name} must hold exactly one file, it holds {len(members)}")
    if has_parent_segment(members[0].filename):  # a crafted archive: no '..' in any remote name (DESIGN §7)
        raise BadFile(f"{remote.name}: member name '{members[0].filename[:100]}' contains a '..' segment")
    if members[0].flag_bits & 0x1:
        raise BadFile(f"{remote.name} cannot be unpacked: its member is encrypted")
    return members[0]


class _Inflater(Protocol):
    def push(self, data: bytes) -> None: ...
    def pull(self, size: int) -> bytes: ...
    def complete(self) -> bool: ...


class _Stored:
    def __init__(self) -> None:
        self._data = b""

    def push(self, data: bytes) -> None:
        self._data += data

    def pull(self, size: int) -> bytes:
        out, self._data = self._data[:size], self._data[size:]
        return out

    def complete(self) -> bool:
        return not self._data


class _Deflated:
    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._data = b""

    def push(self, data: bytes) -> None:
        self._data += data

    def pull(self, size: int) -> bytes:
        if not self._data or self._inflater.eof:
            return b""
        out = self._inflater.decompress(self._data, size)
        self._data = self._inflater.unconsumed_tail
        return out

    def complete(self) -> bool:
        return self._inflater.eof


class _Bzip2:
    def __init__(self) -> None:
        self._inflater = bz2.BZ2Decompressor()
        self._data = b""

    def push(self, data: bytes) -> None:
        self._data += data

    def pull(self, size: int) -> bytes:
        if self._inflater.eof or (not self._data and self._inflater.needs_input):
            return b""
        data, self._data = self._data, b""
        return self._inflater.decompress(data, size)

    def complete(self) -> bool:
        return self._inflater.eof


def _inflater(remote: RemoteFile, member: zipfile.ZipInfo) -> _Inflater:
    match member.compress_type:
        case zipfile.ZIP_STORED:
            return _Stored()
        case zipfile.ZIP_DEFLATED:
            return _Deflated()
        case zipfile.ZIP_BZIP2:
            return _Bzip2()
    raise BadFile(
        f"{remote.name} cannot be unpacked: compression method {member.compress_type} "
        "(stored, deflate and bzip2 are read)"
    )


def _pull(remote: RemoteFile, inflater: _Inflater, size: int) -> bytes:
    try:
        return inflater.pull(size)
    except (zlib.error, OSError, EOFError) as exc:
        raise BadFile(f"{remote.name} cannot be unpacked: {exc}") from exc
