"""Zip members streamed from the real sshd without spooling the archive (importers/zipped.py): the central
directory is read from the archive's tail, then only the member's range; memory stays flat."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
import zlib
from collections.abc import AsyncIterator

import pytest

from services.executor.errors import BadFile
from services.executor.importers.sources import SourceLimits, decoded_chunks
from services.executor.sftp import SftpSession, open_sftp
from shared.catalog_records import ConnectionRecord
from tests.support.executor_harness import Harness

CHUNK = 256 * 1024
LIMITS = SourceLimits(max_ratio=100_000)  # the test data is repetitive: only the streaming is under test


@pytest.fixture
async def sftp(harness: Harness) -> AsyncIterator[SftpSession]:
    await harness.connection()
    doc = await harness.mongo[harness.settings.database("catalog")]["connections"].find_one({"_id": 1})
    async with open_sftp(ConnectionRecord.model_validate(doc), harness.box) as session:
        yield session


def archive(
    content: bytes, method: int = zipfile.ZIP_DEFLATED, *, zip64: bool = False, prefix: bytes = b""
) -> bytes:
    buffer = io.BytesIO()
    buffer.write(prefix)  # e.g. a self-extracting stub before the archive
    with zipfile.ZipFile(buffer, "w", method) as z:
        z.writestr("__MACOSX/._people.csv", b"resource fork")  # ignored, as Finder's archives hold
        with z.open("people.csv", "w", force_zip64=zip64) as member:
            member.write(content)
    return buffer.getvalue()


def lines(count: int) -> bytes:
    return b"".join(b"C%08d,c%d@example.com,%d\n" % (i, i, i % 97) for i in range(count))


async def read_all(sftp: SftpSession, h: Harness, name: str) -> bytes:
    remote = await sftp.stat(name)
    chunks = decoded_chunks(sftp, remote, "zip", CHUNK, lambda n: None, LIMITS)
    return b"".join([c async for c in chunks])


async def test_a_large_member_streams_with_flat_memory_before_the_archive_is_read(
    harness: Harness,
    sftp: SftpSession,
) -> None:
    h = harness
    content = lines(1_200_000)  # ~40 MiB of CSV
    data = archive(content, zipfile.ZIP_STORED)  # stored: the archive is as large as its member
    h.write("big.csv.zip", data)
    remote = await sftp.stat("big.csv.zip")
    read = {"bytes": 0}
    sftp.on_bytes = lambda direction, count: read.__setitem__("bytes", read["bytes"] + count)
    before_first: int | None = None
    size, crc = 0, 0
    tracemalloc.start()
    try:
        async for chunk in decoded_chunks(sftp, remote, "zip", CHUNK, lambda n: None, LIMITS):
            if before_first is None:
                before_first = read["bytes"]
            size, crc = size + len(chunk), zlib.crc32(chunk, crc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (size, crc) == (len(content), zlib.crc32(content))
    assert before_first is not None and before_first < 2 << 20, before_first  # tail + header + prefetch only
    assert read["bytes"] < len(data) + (1 << 20)  # the archive read once, not spooled and re-read
    assert peak < 8 << 20, peak  # a 40 MiB member: chunks in flight (2.2 MB measured), not the archive


@pytest.mark.parametrize(
    ("method", "zip64", "prefix"),
    [
        (zipfile.ZIP_DEFLATED, False, b""),
        (zipfile.ZIP_STORED, False, b""),
        (zipfile.ZIP_BZIP2, False, b""),
        (zipfile.ZIP_DEFLATED, True, b""),
        (zipfile.ZIP_DEFLATED, False, b"#!/bin/sh\nexit 0\n" * 100),
    ],
    ids=["deflate", "stored", "bzip2", "zip64", "prefixed"],
)
async def test_members_of_every_supported_kind_read_back_exactly(
    harness: Harness,
    sftp: SftpSession,
    method: int,
    zip64: bool,
    prefix: bytes,
) -> None:
    content = lines(50_000)
    harness.write("p.csv.zip", archive(content, method, zip64=zip64, prefix=prefix))
    assert await read_all(sftp, harness, "p.csv.zip") == content


async def test_a_corrupt_or_truncated_or_long_directory_archive_is_a_bad_file(
    harness: Harness,
    sftp: SftpSession,
) -> None:
    h = harness
    content = lines(20_000)
    data = bytearray(archive(content, zipfile.ZIP_STORED))
    data[data.find(b"C00010000")] ^= 0x01  # one flipped bit inside the stored member
    h.write("flipped.zip", bytes(data))
    with pytest.raises(BadFile, match=r"^flipped.zip cannot be unpacked: Bad CRC-32"):
        await read_all(sftp, h, "flipped.zip")
    h.write("cut.zip", archive(content)[:-200])  # the central directory lost
    with pytest.raises(BadFile, match=r"^cut.zip is not a zip archive"):
        await read_all(sftp, h, "cut.zip")
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as z:
        for i in range(60_000):  # a central directory of several MiB: refused, not fetched whole
            z.writestr(f"__MACOSX/{i:040d}", b"")
        z.writestr("people.csv", content)
    h.write("many.zip", many.getvalue())
    with pytest.raises(BadFile, match=r"central directory spans more than"):
        await read_all(sftp, h, "many.zip")
