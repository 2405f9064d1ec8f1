"""SFTP adapter (asyncssh): host key verified against the pinned key, paths kept inside the base dir.

asyncssh errors are translated here into `SourceRefused` (permanent) or `SourceUnavailable`
(retryable), so the service never sees a library exception. What the server said is scrubbed of the
connection's secrets on the way (`shared.redact`). SSH connections come from a pool (`ssh_pool.py`) and
outlive a run when EXECUTOR_SSH_IDLE_SECONDS allows it; each run has its own SFTP channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncssh

from services.executor.errors import SourceRefused, SourceUnavailable
from services.executor.ssh_pool import SshPool
from shared.catalog_records import ConnectionRecord
from shared.errors import ValidationFailed
from shared.paths import resolve_inside
from shared.redact import Redactor, connection_redactor, remember
from shared.secrets import SecretBox
from shared.ssh import SshSettingsUnreadable, ssh_client_options, ssh_credentials

CONNECT_TIMEOUT = 20.0
SETTLE_TIMEOUT = 5.0  # reads in flight when a file's reading ends: how long they may take to finish


GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    mtime: float = 0.0

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


class ByteSource(Protocol):
    """Where a file's bytes are read: the SFTP session, or the spool of decrypted files (`pgp_files.Spool`)."""

    def read_chunks(
        self, remote: RemoteFile, chunk_size: int, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]: ...

    async def read_range(self, remote: RemoteFile, start: int, end: int) -> bytes: ...


class SftpSession:
    def __init__(self, connection: ConnectionRecord, sftp: Any, redactor: Redactor | None = None) -> None:
        self.connection = connection
        self._sftp = sftp
        self.redactor = redactor or Redactor()
        self.on_bytes: Callable[[str, int], None] = lambda direction, count: None  # metrics hook

    def resolve(self, path: str) -> str:
        try:
            return resolve_inside(self.connection.base_dir, path)
        except ValidationFailed as exc:
            raise SourceRefused(exc.message) from exc

    async def stat(self, path: str) -> RemoteFile:
        full = self.resolve(path)
        async with _translated(f"file {path}", self.redactor):
            attrs = await self._sftp.stat(full)
        return RemoteFile(full, int(attrs.size or 0), float(attrs.mtime or 0))

    async def exists(self, path: str) -> bool:
        full = self.resolve(path)
        async with _translated(f"file {path}", self.redactor):
            return bool(await self._sftp.exists(full))

    async def glob(self, pattern: str) -> list[RemoteFile]:
        """Files matching a pattern whose wildcards are in the file name only, sorted by name."""
        full = self.resolve(pattern)
        directory, name_pattern = posixpath.split(full)
        if GLOB_CHARS & set(directory):
            raise SourceRefused(f"pattern {pattern}: wildcards are allowed in the file name only")
        async with _translated(f"directory {posixpath.dirname(pattern) or '.'}", self.redactor):
            entries = await self._sftp.readdir(directory)
        found = [
            RemoteFile(
                posixpath.join(directory, e.filename), int(e.attrs.size or 0), float(e.attrs.mtime or 0)
            )
            for e in entries
            if fnmatch.fnmatchcase(e.filename, name_pattern) and e.attrs.type == 1  # regular files
        ]
        return sorted(found, key=lambda f: f.name)

    async def read_chunks(
        self,
        remote: RemoteFile,
        chunk_size: int,
        *,
        prefetch: int = 4,
        start: int = 0,
        end: int | None = None,
    ) -> AsyncIterator[bytes]:
        """The file's bytes in order (from `start`, up to `end` when given: a zip member's range); up to
        `prefetch` reads are in flight, so transfer overlaps work."""
        async with _translated(f"file {remote.path}", self.redactor):
            handle = await self._sftp.open(remote.path, "rb")
            offset, pending = start, []

            def read_next() -> None:
                nonlocal offset
                size = chunk_size if end is None else min(chunk_size, end - offset)
                if size > 0:
                    pending.append(asyncio.ensure_future(handle.read(size, offset)))
                    offset += size

            try:
                for _ in range(prefetch):
                    read_next()
                while pending:
                    chunk = await pending.pop(0)
                    if not chunk:
                        break
                    read_next()
                    self.on_bytes("read", len(chunk))
                    yield chunk
            finally:
                await _settle(pending)
                # Closing a read handle decides nothing; it fails when the reader was abandoned (a
                # stopped run) and its session closed before the generator was finalised.
                with contextlib.suppress(Exception):
                    await handle.close()

    async def read_range(self, remote: RemoteFile, start: int, end: int) -> bytes:
        """The bytes [start, end) of a file (a zip's central directory, a member's local header)."""
        parts = [chunk async for chunk in self.read_chunks(remote, 1 << 20, start=start, end=end)]
        return b"".join(parts)

    async def read_bytes(self, path: str, limit: int = 1 << 20) -> bytes:
        """A small file whole (manifests, count and ready files)."""
        full = self.resolve(path)
        async with _translated(f"file {path}", self.redactor), self._sftp.open(full, "rb") as handle:
            data: bytes = await handle.read(limit + 1)
        if len(data) > limit:
            raise SourceRefused(f"file {path} is larger than {limit} bytes")
        return data

    async def write_file(self, path: str, data: bytes) -> str:
        """Write under a temporary name, then rename: readers never see a half-written file."""

        async def produce(write: Callable[[bytes], Awaitable[None]]) -> None:
            await write(data)

        return await self.write_stream(path, produce)

    async def write_stream(
        self, path: str, produce: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]]
    ) -> str:
        """Stream a file under a temporary name, then rename it into place (replacing an older one)."""
        full = self.resolve(path)
        temporary = f"{posixpath.dirname(full)}/.{posixpath.basename(full)}.part"
        async with _translated(f"file {path}", self.redactor):
            await self._makedirs(posixpath.dirname(full))
            try:
                async with self._sftp.open(temporary, "wb") as handle:
                    offset = 0

                    async def write(data: bytes) -> None:
                        nonlocal offset
                        await handle.write(data, offset)
                        offset += len(data)
                        self.on_bytes("write", len(data))

                    await produce(write)
                await self._sftp.posix_rename(temporary, full)
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._sftp.remove(temporary)
                raise
        return full

    # Moves and removals of files read (`importers/partner_files.py`): full paths, from `resolve`.
    async def exists_full(self, full: str) -> bool:
        async with _translated(f"file {full}", self.redactor):
            return bool(await self._sftp.exists(full))

    async def rename_full(self, source: str, target: str) -> None:
        async with _translated(f"file {source}", self.redactor):
            await self._sftp.posix_rename(source, target)

    async def remove_if_exists(self, full: str) -> bool:
        async with _translated(f"file {full}", self.redactor):
            if not await self._sftp.exists(full):
                return False
            await self._sftp.remove(full)
            return True

    async def make_dirs(self, directory: str) -> None:
        async with _translated(f"directory {directory}", self.redactor):
            await self._makedirs(directory)

    async def _makedirs(self, directory: str) -> None:
        base = posixpath.normpath("/" + self.connection.base_dir.strip("/"))
        if directory != base and not await self._sftp.isdir(directory):
            await self._sftp.makedirs(directory, exist_ok=True)


_pool = SshPool()  # a connection per run until the executor's wiring installs its pool (`use_pool`)


def use_pool(pool: SshPool) -> SshPool:
    """Make `pool` the one `open_sftp` takes connections from; returns the one it replaces."""
    global _pool
    previous, _pool = _pool, pool
    return previous


@contextlib.asynccontextmanager
async def open_sftp(connection: ConnectionRecord, secrets: SecretBox) -> AsyncIterator[SftpSession]:
    """An SFTP session of the run's own, on a pooled SSH connection of these exact settings (or a new one)."""
    redactor = connection_redactor(connection, secrets)
    remember(redactor)  # every run, pooled or not: the run's reporter scrubs with these secrets too
    credentials = ssh_credentials(connection, secrets)
    pool = _pool
    key = pool.key(
        connection.host,
        connection.port,
        connection.username,
        credentials.password,
        credentials.private_key,
        connection.host_key,
        credentials.preferred_auth,
    )
    server = f"SFTP server {connection.host}:{connection.port}"

    async def connect() -> Any:
        try:
            options = ssh_client_options(connection, credentials)
        except SshSettingsUnreadable as exc:
            raise SourceRefused(exc.message) from exc
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await asyncssh.connect(connection.host, **options)

    async with contextlib.AsyncExitStack() as stack:
        async with _translated(server, redactor):
            sftp = await stack.enter_async_context(pool.sftp_client(key, connect))
        yield SftpSession(connection, sftp, redactor)


async def _settle(reads: list[asyncio.Future[bytes]]) -> None:
    """Let reads still in flight end (past EOF they return b'' at once) rather than cancel them.

    A cancelled read leaves asyncssh's own block requests running; on a channel that is closed
    gracefully (pooled connections) they end with errors nobody retrieves, logged as noise."""
    if not reads:
        return
    _, late = await asyncio.wait(reads, timeout=SETTLE_TIMEOUT)
    for task in late:
        task.cancel()
    await asyncio.gather(*reads, return_exceptions=True)


@contextlib.asynccontextmanager
async def _translated(what: str, redactor: Redactor) -> AsyncIterator[None]:
    """asyncssh errors as Connect errors; the server's words (`reason`, `exc`) scrubbed of secrets."""
    said = redactor.scrub
    try:
        yield
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SourceRefused(f"{what}: host key does not match the pinned key ({said(exc.reason)})") from exc
    except asyncssh.PermissionDenied as exc:
        raise SourceRefused(f"{what}: authentication failed ({said(exc.reason)})") from exc
    except asyncssh.KeyImportError as exc:
        raise SourceRefused(f"{what}: the private key cannot be read ({said(str(exc))})") from exc
    except asyncssh.SFTPNoSuchFile as exc:
        raise SourceRefused(f"{what}: not found") from exc
    except asyncssh.SFTPPermissionDenied as exc:
        raise SourceRefused(f"{what}: permission denied") from exc
    except asyncssh.SFTPError as exc:
        raise SourceUnavailable(f"{what}: SFTP error ({said(exc.reason)})") from exc
    except asyncssh.ChannelOpenError as exc:  # e.g. the server's MaxSessions reached
        raise SourceUnavailable(f"{what}: session refused ({said(exc.reason)})") from exc
    except (asyncssh.DisconnectError, asyncssh.ConnectionLost) as exc:
        raise SourceUnavailable(f"{what}: connection lost ({said(exc.reason)})") from exc
    except (OSError, TimeoutError) as exc:
        raise SourceUnavailable(f"{what}: unreachable ({said(str(exc))})") from exc
