"""PGP for a run's files (docs/pgp.md): the keys a job names, read from the catalog's database with their
secrets opened by the executor's `SecretBox`; an import's files decrypted into a local spool; an export's
keys proven before its upload starts. The cryptography runs in gpg's process (`shared.pgp`)."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from services.executor.ports import CatalogReader
from services.executor.sftp import RemoteFile
from shared.catalog_records import PgpKeyRecord
from shared.contracts.jobs import DestinationPgp, SourcePgp
from shared.errors import NotFound
from shared.pgp import KeyNotSecret, PgpError, decrypt_stream, inspect_key
from shared.pgp.verdicts import check_usable
from shared.secrets import SecretBox, open_field

ENCRYPTED_SUFFIXES = (".pgp", ".gpg", ".asc")


def plain_name(path: str) -> str:
    """The name without its encryption suffix: `contacts.csv.gz.pgp` is read as `contacts.csv.gz`."""
    for suffix in ENCRYPTED_SUFFIXES:
        if path.lower().endswith(suffix):
            return path[: -len(suffix)]
    return path


@dataclass(frozen=True)
class DecryptKeys:
    private_key: bytes
    passphrase: str | None
    verify_with: list[bytes] | None  # None: signatures are not checked


@dataclass(frozen=True)
class EncryptKeys:
    recipients: list[bytes]
    sign_with: bytes | None
    sign_passphrase: str | None
    armor: bool


async def decrypt_keys(catalog: CatalogReader, secrets: SecretBox, pgp: SourcePgp) -> DecryptKeys:
    private_key, passphrase = _private(
        await _key(catalog, pgp.decrypt_with, "decrypt_with"), "decrypt_with", secrets
    )
    verify_with = None
    if pgp.verify_with is not None:
        records = [
            await _key(catalog, key_id, f"verify_with[{i}]") for i, key_id in enumerate(pgp.verify_with)
        ]
        verify_with = [record.public_key.encode() for record in records]
    return DecryptKeys(private_key, passphrase, verify_with)


async def encrypt_keys(catalog: CatalogReader, secrets: SecretBox, pgp: DestinationPgp) -> EncryptKeys:
    """The export's keys, each checked by gpg now (expired, revoked, unable to encrypt or sign, a wrong
    passphrase): a key problem fails the run before anything is uploaded."""
    recipients = []
    for i, key_id in enumerate(pgp.encrypt_to):
        field = f"encrypt_to[{i}]"
        material = (await _key(catalog, key_id, field)).public_key.encode()
        check_usable((await inspect_key(material, None, field)).facts, field, usage="encrypt")
        recipients.append(material)
    sign_with, passphrase = None, None
    if pgp.sign_with is not None:
        sign_with, passphrase = _private(
            await _key(catalog, pgp.sign_with, "sign_with"), "sign_with", secrets
        )
        check_usable((await inspect_key(sign_with, passphrase, "sign_with")).facts, "sign_with", usage="sign",
                     secret=True)  # fmt: skip
    return EncryptKeys(recipients, sign_with, passphrase, pgp.armor)


async def _key(catalog: CatalogReader, key_id: int, field: str) -> PgpKeyRecord:
    try:
        return await catalog.key(key_id)
    except NotFound:
        raise PgpError(f"{field}: key {key_id} does not exist (deleted?)", field=field) from None


def _private(record: PgpKeyRecord, field: str, secrets: SecretBox) -> tuple[bytes, str | None]:
    if record.private_key_encrypted is None:
        raise KeyNotSecret(f"{field}: key {record.id} ({record.name}) is a public key", field=field)
    material = base64.b64decode(open_field(secrets, "pgp_key", record, "private_key_encrypted") or "")
    passphrase = open_field(secrets, "pgp_key", record, "passphrase_encrypted")
    return material, passphrase


logger = logging.getLogger(__name__)
SPOOL_PREFIX = "connect-spool-"
OWNER_FILE = ".owner"
UNOWNED_GRACE_SECONDS = 600.0


class Spool:
    """Local files holding the plaintext of a run's decrypted source files.

    gpg gives its verdict (integrity, signature) only at the end of a message, so a file is decrypted
    here whole first and read only once that verdict is clean: the bytes verified are the bytes loaded.
    Written and read in chunks (memory stays flat); the directory goes with `close`, also after a failure.
    """

    def __init__(self, directory: str | None) -> None:
        self.path = tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=directory)
        # Held while the spool lives: a process killed with -9 drops it, so the next executor to start
        # can tell an orphaned spool (decrypted partner data) from one in use (`sweep_orphaned_spools`).
        self._owner = (Path(self.path) / OWNER_FILE).open("wb")
        fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._files: dict[str, Path] = {}  # remote path → local file

    async def decrypt(
        self, remote: RemoteFile, chunks: AsyncIterable[bytes], keys: DecryptKeys
    ) -> RemoteFile:
        """`remote` decrypted into the spool; the returned file describes the plaintext (size, name)."""
        local = Path(self.path) / f"{len(self._files)}.plain"
        plain = decrypt_stream(chunks, keys.private_key, keys.passphrase, keys.verify_with)
        out = await asyncio.to_thread(local.open, "wb")
        with out:
            async for chunk in plain:
                await asyncio.to_thread(out.write, chunk)
            size = out.tell()
        self._files[remote.path] = local
        return RemoteFile(remote.path, size, remote.mtime)

    async def read_chunks(
        self, remote: RemoteFile, chunk_size: int, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """A decrypted file's plaintext, from `start` up to `end` when given (the `sources.ByteSource` of
        the spooled files: an encrypted zip's member is read by its range, as over SFTP)."""
        handle = await asyncio.to_thread(self._files[remote.path].open, "rb")
        with handle:
            await asyncio.to_thread(handle.seek, start)
            left = None if end is None else max(end - start, 0)
            while left is None or left > 0:
                wanted = chunk_size if left is None else min(chunk_size, left)
                chunk = await asyncio.to_thread(handle.read, wanted)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def read_range(self, remote: RemoteFile, start: int, end: int) -> bytes:
        return b"".join([chunk async for chunk in self.read_chunks(remote, 1 << 20, start=start, end=end)])

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._owner.close()


async def remove_orphaned_spools(directory: str | None) -> None:
    """At start: spools left by executors that died go (their plaintext must not outlive the run)."""
    removed = await asyncio.to_thread(sweep_orphaned_spools, directory)
    if removed:
        logger.warning("removed %d decrypted spool(s) left by an executor that died", removed)


def sweep_orphaned_spools(directory: str | None) -> int:
    """Remove the spools of executors that died (plaintext must not outlive its run); those whose owner
    lives are locked and stay. Called at start. Returns how many were removed."""
    removed = 0
    for spool in Path(directory or tempfile.gettempdir()).glob(f"{SPOOL_PREFIX}*"):
        if spool.is_dir() and _orphaned(spool):
            shutil.rmtree(spool, ignore_errors=True)
            removed += 1
    return removed


def _orphaned(spool: Path) -> bool:
    try:
        owner = (spool / OWNER_FILE).open("rb")
    except FileNotFoundError:  # died between creating the directory and its lock file, or is doing so now
        try:
            return time.time() - spool.stat().st_mtime > UNOWNED_GRACE_SECONDS
        except FileNotFoundError:  # its live owner removed it meanwhile: nothing to sweep
            return False
    with owner:
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
