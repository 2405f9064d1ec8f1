"""Adobe Analytics data-feed deliveries on SFTP: manifest, MD5 and record counts checked before loading.

The hit-data files have no header: the column names come from the delivery's `column_headers.tsv`;
a mapped column that has a lookup file of the same name (`browser` → `browser.tsv`) is translated
from its id to the lookup's value.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import io
import posixpath
import tarfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from services.executor.domain import CsvRecord
from services.executor.domain.adobe import (
    FeedFile,
    Manifest,
    parse_column_headers,
    parse_lookup,
    parse_manifest,
    record_continues,
    split_hit_line,
)
from services.executor.errors import BadFile, SourceRefused
from services.executor.importers.sources import (
    DEFAULT_LIMITS,
    GzipStream,
    Parsed,
    SourceLimits,
    decoded_chunks,
)
from services.executor.sftp import GLOB_CHARS, RemoteFile, SftpSession
from shared.contracts.jobs import PartnerFeedSource

MAX_LOOKUP_BYTES = 64 << 20
MAX_LOOKUP_INFLATED = 256 << 20  # a lookup file inflated (a .tsv.gz or a .tar.gz of lookups)


@dataclass
class Delivery:
    manifest: RemoteFile
    content: Manifest
    columns: list[str] = field(default_factory=list)
    lookups: dict[str, dict[str, str]] = field(default_factory=dict)
    data: list[RemoteFile] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.data)


async def find_manifest(sftp: SftpSession, source: PartnerFeedSource) -> RemoteFile:
    if GLOB_CHARS & set(posixpath.basename(source.manifest_path)):
        matches = [f for f in await sftp.glob(source.manifest_path) if f.name.endswith(".txt")]
        if not matches:
            raise SourceRefused(f"no manifest matches {source.manifest_path}")
        return max(matches, key=lambda f: (f.mtime, f.name))
    return await sftp.stat(source.manifest_path)


async def open_delivery(
    sftp: SftpSession, manifest: RemoteFile, chunk_size: int, limits: SourceLimits = DEFAULT_LIMITS
) -> Delivery:
    """Read the manifest, check every listed file's size and MD5 and the record counts, load lookups.

    Hashing, inflating and counting run off the event loop, under the same limits as the load.
    """
    base = posixpath.normpath("/" + sftp.connection.base_dir.strip("/"))
    folder = posixpath.relpath(posixpath.dirname(manifest.path), base)
    content = parse_manifest((await sftp.read_bytes(posixpath.relpath(manifest.path, base))).decode("utf-8"))
    delivery = Delivery(manifest, content)
    total = 0
    for listed in content.lookup_files:
        remote = await sftp.stat(posixpath.join(folder, listed.name))
        blob = await _checked_bytes(sftp, remote, listed, chunk_size)
        await asyncio.to_thread(_load_lookups, delivery, listed.name, blob, limits)
    for listed in content.data_files:
        remote = await sftp.stat(posixpath.join(folder, listed.name))
        total += await _checked_records(sftp, remote, listed, chunk_size, limits)
        delivery.data.append(remote)
    if content.total_records is not None and total != content.total_records:
        raise BadFile(f"manifest Total-Records is {content.total_records}, the data files hold {total}")
    if not delivery.columns:
        raise BadFile("the delivery has no column_headers.tsv lookup")
    return delivery


def _check_size(remote: RemoteFile, listed: FeedFile) -> None:
    if listed.size is not None and remote.size != listed.size:
        raise BadFile(f"{listed.name} is {remote.size} bytes, the manifest says {listed.size}")


async def _checked_bytes(sftp: SftpSession, remote: RemoteFile, listed: FeedFile, chunk_size: int) -> bytes:
    _check_size(remote, listed)
    if remote.size > MAX_LOOKUP_BYTES:
        raise BadFile(f"lookup file {listed.name} is larger than {MAX_LOOKUP_BYTES} bytes")
    digest, parts = hashlib.md5(usedforsecurity=False), []
    async for chunk in sftp.read_chunks(remote, chunk_size):
        await asyncio.to_thread(digest.update, chunk)
        parts.append(chunk)
    if digest.hexdigest() != listed.md5:
        raise BadFile(f"MD5 of {listed.name} is {digest.hexdigest()}, the manifest says {listed.md5}")
    return b"".join(parts)


async def _checked_records(
    sftp: SftpSession, remote: RemoteFile, listed: FeedFile, chunk_size: int, limits: SourceLimits
) -> int:
    """Stream a hit-data file once: its MD5 and its number of records."""
    _check_size(remote, listed)
    counter = _RecordCounter(listed.name, limits, piece_size=chunk_size * 4)
    async for chunk in sftp.read_chunks(remote, chunk_size):
        await asyncio.to_thread(counter.feed, chunk)
    records = await asyncio.to_thread(counter.finish)
    if counter.digest.hexdigest() != listed.md5:
        raise BadFile(f"MD5 of {listed.name} is {counter.digest.hexdigest()}, the manifest says {listed.md5}")
    if listed.records is not None and records != listed.records:
        raise BadFile(f"{listed.name} holds {records} records, the manifest says {listed.records}")
    return records


class _RecordCounter:
    """MD5 of the compressed bytes and the number of records they inflate to (CPU only: runs in a thread)."""

    def __init__(self, name: str, limits: SourceLimits, *, piece_size: int) -> None:
        self.digest = hashlib.md5(usedforsecurity=False)
        self.stream = GzipStream(name, limits, piece_size=piece_size)
        self.lines = _HitLines(name, limits.max_record_length)
        self.records = 0

    def feed(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.stream.push(chunk)
        while piece := self.stream.pull():
            self.records += sum(1 for _, line in self.lines.feed(piece) if not record_continues(line))

    def finish(self) -> int:
        lines = self.lines.feed(self.stream.finish()) + self.lines.finish()
        return self.records + sum(1 for _, line in lines if not record_continues(line))


class _HitLines:
    """Physical lines of hit data with their numbers; a line longer than the bound is a bad file."""

    def __init__(self, name: str, max_length: int) -> None:
        self.name = name
        self.max_length = max_length
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail: list[str] = []  # pieces of the last line, not yet ended
        self._tail_length = 0
        self.count = 0  # lines returned so far

    def feed(self, data: bytes) -> list[tuple[int, str]]:
        text = self._decoder.decode(data)
        if "\n" not in text:
            self._tail.append(text)
            self._tail_length += len(text)
            self._check(self._tail_length)
            return []
        lines = ("".join(self._tail) + text).split("\n")
        last = lines.pop()
        self._tail, self._tail_length = [last], len(last)
        numbered = list(enumerate(lines, start=self.count + 1))
        for number, line in numbered:
            self._check(len(line), number)
        self.count += len(lines)
        self._check(self._tail_length)
        return numbered

    def finish(self) -> list[tuple[int, str]]:
        last = "".join(self._tail) + self._decoder.decode(b"", final=True)
        self._tail, self._tail_length = [], 0
        if not last.strip():
            return []
        self.count += 1
        return [(self.count, last)]

    def _check(self, length: int, number: int | None = None) -> None:
        if length > self.max_length:
            raise BadFile(
                f"line {number or self.count + 1} of {self.name} is longer than {self.max_length:,} characters"
            )


def _load_lookups(delivery: Delivery, name: str, blob: bytes, limits: SourceLimits) -> None:
    """Lookups of one listed file (CPU only: runs in a thread); inflated sizes bounded like data files."""
    if name.endswith((".tar.gz", ".tgz")):
        tsv = _inflated(name, blob, limits)
        try:
            with tarfile.open(fileobj=io.BytesIO(tsv), mode="r:") as archive:
                for member in archive.getmembers():
                    if member.isfile() and member.name.endswith(".tsv"):
                        extracted = archive.extractfile(member)
                        if extracted is not None:
                            _add_lookup(delivery, posixpath.basename(member.name), extracted.read())
        except tarfile.TarError as exc:
            raise BadFile(f"lookup archive {name} cannot be read: {exc}") from exc
    elif name.endswith(".tsv.gz"):
        _add_lookup(delivery, name.removesuffix(".gz"), _inflated(name, blob, limits))
    else:
        _add_lookup(delivery, name, blob)


def _inflated(name: str, blob: bytes, limits: SourceLimits) -> bytes:
    bounded = replace(limits, max_decompressed_bytes=min(limits.max_decompressed_bytes, MAX_LOOKUP_INFLATED))
    stream = GzipStream(name, bounded, piece_size=1 << 20)
    stream.push(blob)
    parts = []
    while piece := stream.pull():
        parts.append(piece)
    parts.append(stream.finish())
    return b"".join(parts)


def _add_lookup(delivery: Delivery, name: str, data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    stem = posixpath.basename(name).removesuffix(".tsv").split("-")[-1]
    if stem == "column_headers":
        delivery.columns = parse_column_headers(text)
    else:
        delivery.lookups[stem] = parse_lookup(text)


async def hit_pieces(
    sftp: SftpSession,
    delivery: Delivery,
    chunk_size: int,
    on_raw: Callable[[int], None],
    limits: SourceLimits = DEFAULT_LIMITS,
) -> AsyncIterator[Parsed]:
    """Records of every hit-data file, in manifest order; the delivery's header comes first."""
    for file_no, remote in enumerate(delivery.data):
        yield Parsed(file_no, [CsvRecord(0, delivery.columns)], header=True)
        splitter = _HitSplitter(remote.name, limits.max_record_length)
        async for chunk in decoded_chunks(sftp, remote, "gzip", chunk_size, on_raw, limits):
            records = await asyncio.to_thread(splitter.feed, chunk)
            if records:
                yield Parsed(file_no, records)
        records = splitter.finish()
        if records:
            yield Parsed(file_no, records)


class _HitSplitter:
    """Hit-data records of a decompressed byte stream (a record may continue over lines)."""

    def __init__(self, name: str, max_length: int) -> None:
        self.lines = _HitLines(name, max_length)
        self.max_length = max_length
        self._pending: list[str] = []
        self._pending_length = 0
        self._start = 1

    def feed(self, data: bytes) -> list[CsvRecord]:
        return self._records(self.lines.feed(data))

    def finish(self) -> list[CsvRecord]:
        records = self._records(self.lines.finish())
        if self._pending:
            records.append(CsvRecord(self._start, split_hit_line("\n".join(self._pending))))
            self._pending = []
        return records

    def _records(self, lines: list[tuple[int, str]]) -> list[CsvRecord]:
        records = []
        for number, line in lines:
            if not self._pending:
                self._start = number
            if record_continues(line):
                self._pending.append(line)
                self._pending_length += len(line) + 1
                if self._pending_length > self.max_length:
                    raise BadFile(
                        f"the record at line {self._start} is longer than {self.max_length:,} characters"
                    )
                continue
            records.append(CsvRecord(self._start, split_hit_line("\n".join([*self._pending, line]))))
            self._pending, self._pending_length = [], 0
        return records


def translate_lookups(
    delivery: Delivery, records: list[CsvRecord], positions: dict[int, str]
) -> list[CsvRecord]:
    """Replace lookup ids of mapped columns by their values (`browser` 12 → "Chrome 120")."""
    if not positions:
        return records
    out = []
    for record in records:
        values = list(record.values)
        for position, lookup in positions.items():
            if position < len(values):
                values[position] = delivery.lookups[lookup].get(values[position], values[position])
        out.append(CsvRecord(record.line, values))
    return out
