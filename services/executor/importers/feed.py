"""Adobe Analytics data-feed deliveries on SFTP: manifest, MD5 and record counts checked before loading.

The hit-data files have no header: the column names come from the delivery's `column_headers.tsv`;
a mapped column that has a lookup file of the same name (`browser` → `browser.tsv`) is translated
from its id to the lookup's value.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

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
from services.executor.importers.sources import Parsed, decoded_chunks
from services.executor.sftp import GLOB_CHARS, RemoteFile, SftpSession
from shared.contracts.jobs import PartnerFeedSource

MAX_LOOKUP_BYTES = 64 << 20


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


async def open_delivery(sftp: SftpSession, manifest: RemoteFile, chunk_size: int) -> Delivery:
    """Read the manifest, check every listed file's size and MD5 and the record counts, load lookups."""
    base = posixpath.normpath("/" + sftp.connection.base_dir.strip("/"))
    folder = posixpath.relpath(posixpath.dirname(manifest.path), base)
    content = parse_manifest((await sftp.read_bytes(posixpath.relpath(manifest.path, base))).decode("utf-8"))
    delivery = Delivery(manifest, content)
    total = 0
    for listed in content.lookup_files:
        remote = await sftp.stat(posixpath.join(folder, listed.name))
        blob = await _checked_bytes(sftp, remote, listed, chunk_size)
        _load_lookups(delivery, listed.name, blob)
    for listed in content.data_files:
        remote = await sftp.stat(posixpath.join(folder, listed.name))
        total += await _checked_records(sftp, remote, listed, chunk_size)
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
        digest.update(chunk)
        parts.append(chunk)
    if digest.hexdigest() != listed.md5:
        raise BadFile(f"MD5 of {listed.name} is {digest.hexdigest()}, the manifest says {listed.md5}")
    return b"".join(parts)


async def _checked_records(sftp: SftpSession, remote: RemoteFile, listed: FeedFile, chunk_size: int) -> int:
    """Stream a hit-data file once: its MD5 and its number of records."""
    _check_size(remote, listed)
    digest = hashlib.md5(usedforsecurity=False)
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
    records, tail = 0, b""
    async for chunk in sftp.read_chunks(remote, chunk_size):
        digest.update(chunk)
        try:
            text = tail + inflater.decompress(chunk)
        except zlib.error as exc:
            raise BadFile(f"{listed.name} is not valid gzip data: {exc}") from exc
        lines = text.split(b"\n")
        tail = lines.pop()
        records += sum(1 for line in lines if not record_continues(line.decode("utf-8", "replace")))
    if tail.strip():
        records += 1
    if digest.hexdigest() != listed.md5:
        raise BadFile(f"MD5 of {listed.name} is {digest.hexdigest()}, the manifest says {listed.md5}")
    if listed.records is not None and records != listed.records:
        raise BadFile(f"{listed.name} holds {records} records, the manifest says {listed.records}")
    return records


def _load_lookups(delivery: Delivery, name: str, blob: bytes) -> None:
    if name.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as archive:
                for member in archive.getmembers():
                    if member.isfile() and member.name.endswith(".tsv"):
                        extracted = archive.extractfile(member)
                        if extracted is not None:
                            _add_lookup(delivery, posixpath.basename(member.name), extracted.read())
        except tarfile.TarError as exc:
            raise BadFile(f"lookup archive {name} cannot be read: {exc}") from exc
    elif name.endswith(".tsv.gz"):
        try:
            _add_lookup(delivery, name.removesuffix(".gz"), zlib.decompress(blob, zlib.MAX_WBITS | 32))
        except zlib.error as exc:
            raise BadFile(f"lookup file {name} is not valid gzip data") from exc
    else:
        _add_lookup(delivery, name, blob)


def _add_lookup(delivery: Delivery, name: str, data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    stem = posixpath.basename(name).removesuffix(".tsv").split("-")[-1]
    if stem == "column_headers":
        delivery.columns = parse_column_headers(text)
    else:
        delivery.lookups[stem] = parse_lookup(text)


async def hit_pieces(
    sftp: SftpSession, delivery: Delivery, chunk_size: int, on_raw: Callable[[int], None]
) -> AsyncIterator[Parsed]:
    """Records of every hit-data file, in manifest order; the delivery's header comes first."""
    for file_no, remote in enumerate(delivery.data):
        yield Parsed(file_no, [CsvRecord(0, delivery.columns)], header=True)
        line_no, pending, start, tail = 0, "", 1, ""
        async for chunk in decoded_chunks(sftp, remote, "gzip", chunk_size, on_raw):
            lines = (tail + chunk.decode("utf-8", errors="replace")).split("\n")
            tail = lines.pop()
            records = []
            for line in lines:
                line_no += 1
                if not pending:
                    start = line_no
                if record_continues(line):
                    pending += line + "\n"
                    continue
                records.append(CsvRecord(start, split_hit_line(pending + line)))
                pending = ""
            if records:
                yield Parsed(file_no, records)
        if tail or pending:
            yield Parsed(
                file_no, [CsvRecord(line_no + 1 if not pending else start, split_hit_line(pending + tail))]
            )


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
