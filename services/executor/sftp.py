"""SFTP adapter (asyncssh): host key verified against the pinned key, paths kept inside the base dir.

asyncssh errors are translated here into `SourceRefused` (permanent) or `SourceUnavailable`
(retryable), so the service never sees a library exception.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncssh

from services.executor.errors import SourceRefused, SourceUnavailable
from shared.catalog_records import ConnectionRecord
from shared.errors import ValidationFailed
from shared.paths import resolve_inside
from shared.secrets import SecretBox

CONNECT_TIMEOUT = 20.0


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int


class SftpSession:
    def __init__(self, connection: ConnectionRecord, sftp: Any) -> None:
        self.connection = connection
        self._sftp = sftp

    def resolve(self, path: str) -> str:
        try:
            return resolve_inside(self.connection.base_dir, path)
        except ValidationFailed as exc:
            raise SourceRefused(exc.message) from exc

    async def stat(self, path: str) -> RemoteFile:
        full = self.resolve(path)
        async with _translated(f"file {path}"):
            attrs = await self._sftp.stat(full)
        return RemoteFile(full, int(attrs.size or 0))

    async def read_chunks(self, remote: RemoteFile, chunk_size: int) -> AsyncIterator[bytes]:
        async with _translated(f"file {remote.path}"), self._sftp.open(remote.path, "rb") as handle:
            while chunk := await handle.read(chunk_size):
                yield chunk

    async def write_file(self, path: str, data: bytes) -> str:
        """Write under a temporary name, then rename: readers never see a half-written file."""
        full = self.resolve(path)
        temporary = f"{full}.part"
        async with _translated(f"file {path}"):
            async with self._sftp.open(temporary, "wb") as handle:
                await handle.write(data)
            await self._sftp.posix_rename(temporary, full)
        return full


@contextlib.asynccontextmanager
async def open_sftp(connection: ConnectionRecord, secrets: SecretBox) -> AsyncIterator[SftpSession]:
    options = _client_options(connection, secrets)
    async with _translated(f"SFTP server {connection.host}:{connection.port}"):
        async with asyncio.timeout(CONNECT_TIMEOUT):
            ssh = await asyncssh.connect(connection.host, **options)
    try:
        async with _translated(f"SFTP server {connection.host}:{connection.port}"):
            sftp = await ssh.start_sftp_client()
        yield SftpSession(connection, sftp)
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
        client_keys.append(asyncssh.import_private_key(secrets.decrypt(connection.private_key_encrypted)))
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
async def _translated(what: str) -> AsyncIterator[None]:
    try:
        yield
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SourceRefused(f"{what}: host key does not match the pinned key ({exc.reason})") from exc
    except asyncssh.PermissionDenied as exc:
        raise SourceRefused(f"{what}: authentication failed ({exc.reason})") from exc
    except asyncssh.SFTPNoSuchFile as exc:
        raise SourceRefused(f"{what}: not found") from exc
    except asyncssh.SFTPPermissionDenied as exc:
        raise SourceRefused(f"{what}: permission denied") from exc
    except asyncssh.SFTPError as exc:
        raise SourceUnavailable(f"{what}: SFTP error ({exc.reason})") from exc
    except (asyncssh.DisconnectError, asyncssh.ConnectionLost) as exc:
        raise SourceUnavailable(f"{what}: connection lost ({exc.reason})") from exc
    except (OSError, TimeoutError) as exc:
        raise SourceUnavailable(f"{what}: unreachable ({exc})") from exc
