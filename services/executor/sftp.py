"""SFTP adapter (asyncssh): host key verified against the pinned key, paths kept inside the base dir.

asyncssh errors are translated here into `SourceRefused` (permanent) or `SourceUnavailable`
(retryable), so the service never sees a library exception. What the server said is scrubbed of the
connection's secrets on the way (`shared.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncssh

from services.executor.errors import SourceRefused, SourceUnavailable
from shared.catalog_records import ConnectionRecord
from shared.errors import ValidationFailed
from shared.paths import resolve_inside
from shared.redact import Redactor, connection_redactor, remember
from shared.secrets import SecretBox

CONNECT_TIMEOUT = 20.0


GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    mtime: float = 0.0

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


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
        self, remote: RemoteFile, chunk_size: int, *, prefetch: int = 4
    ) -> AsyncIterator[bytes]:
        """The file's bytes in order; up to `prefetch` reads are in flight, so transfer overlaps work."""
        async with (
            _translated(f"file {remote.path}", self.redactor),
            self._sftp.open(remote.path, "rb") as handle,
        ):
            offset, pending = 0, []
            for _ in range(prefetch):
                pending.append(asyncio.ensure_future(handle.read(chunk_size, offset)))
                offset += chunk_size
            try:
                while pending:
                    chunk = await pending.pop(0)
                    if not chunk:
                        break
                    pending.append(asyncio.ensure_future(handle.read(chunk_size, offset)))
                    offset += chunk_size
                    self.on_bytes("read", len(chunk))
                    yield chunk
            finally:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

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

    async def _makedirs(self, directory: str) -> None:
        base = posixpath.normpath("/" + self.connection.base_dir.strip("/"))
        if directory != base and not await self._sftp.isdir(directory):
            await self._sftp.makedirs(directory, exist_ok=True)


@contextlib.asynccontextmanager
async def open_sftp(connection: ConnectionRecord, secrets: SecretBox) -> AsyncIterator[SftpSession]:
    options = _client_options(connection, secrets)
    redactor = connection_redactor(connection, secrets)
    remember(redactor)  # the run's reporter scrubs with these secrets too
    server = f"SFTP server {connection.host}:{connection.port}"
    async with _translated(server, redactor):
        async with asyncio.timeout(CONNECT_TIMEOUT):
            ssh = await asyncssh.connect(connection.host, **options)
    try:
        async with _translated(server, redactor):
            sftp = await ssh.start_sftp_client()
        yield SftpSession(connection, sftp, redactor)
    finally:
        ssh.close()
        with contextlib.suppress(Exception):
            await ssh.wait_closed()


def _client_options(connection: ConnectionRecord, secrets: SecretBox) -> dict[str, Any]:
    try:
        host_key = asyncssh.import_public_key(connection.host_key)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise SourceRefused(f"connection {connection.name}: pinned host key cannot be read") from exc
    client_keys = []
    if connection.private_key_encrypted:
        try:
            client_keys.append(asyncssh.import_private_key(secrets.decrypt(connection.private_key_encrypted)))
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise SourceRefused(f"connection {connection.name}: the private key cannot be read") from exc
    password = secrets.decrypt(connection.password_encrypted) if connection.password_encrypted else None
    return {
        "port": connection.port,
        "username": connection.username,
        "password": password,
        "client_keys": client_keys,
        "known_hosts": ([host_key], [], []),
        "agent_path": None,
        "config": None,
        "preferred_auth": "publickey,password" if client_keys else "password,keyboard-interactive",
    }


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
    except (asyncssh.DisconnectError, asyncssh.ConnectionLost) as exc:
        raise SourceUnavailable(f"{what}: connection lost ({said(exc.reason)})") from exc
    except (OSError, TimeoutError) as exc:
        raise SourceUnavailable(f"{what}: unreachable ({said(str(exc))})") from exc
