"""Adapter: fetch an SFTP server's host key for pinning, and test a connection (asyncssh)."""

from __future__ import annotations

import asyncio

import asyncssh

from services.catalog.schemas import ConnectionTest, HostKeyView
from shared.catalog_records import ConnectionRecord
from shared.errors import PermanentError
from shared.paths import resolve_inside
from shared.redact import connection_redactor
from shared.secrets import SecretBox

TIMEOUT = 15.0


class AsyncsshProbe:
    async def host_key(self, host: str, port: int) -> HostKeyView:
        try:
            async with asyncio.timeout(TIMEOUT):
                key = await asyncssh.get_server_host_key(host, port)
        except (OSError, TimeoutError, ValueError, asyncssh.Error) as exc:  # ValueError: an invalid host name
            raise PermanentError(f"could not reach {host}:{port}: {exc}", field="host") from exc
        if key is None:
            raise PermanentError(f"{host}:{port} offered no host key", field="host")
        return HostKeyView(
            host_key=key.export_public_key().decode().strip(), fingerprint=key.get_fingerprint()
        )

    async def test(self, connection: ConnectionRecord, secret_box: SecretBox) -> ConnectionTest:
        """The answer carries what the server said, scrubbed of the connection's secrets."""
        redactor = connection_redactor(connection, secret_box)
        try:
            pinned = asyncssh.import_public_key(connection.host_key)
            options = _credentials(connection, secret_box)
            async with asyncio.timeout(TIMEOUT), asyncssh.connect(
                connection.host, port=connection.port, username=connection.username, known_hosts=([pinned], [], []),
                agent_path=None, config=None, **options,
            ) as ssh, ssh.start_sftp_client() as sftp:  # fmt: skip
                entries = await sftp.listdir(resolve_inside(connection.base_dir, "."))
        except asyncssh.HostKeyNotVerifiable:
            return ConnectionTest(ok=False, message="the server's host key does not match the pinned key")
        except asyncssh.PermissionDenied:
            return ConnectionTest(ok=False, message="authentication failed")
        except (OSError, TimeoutError, asyncssh.Error, ValueError) as exc:
            return ConnectionTest(ok=False, message=redactor.scrub(f"connection failed: {exc}"))
        fingerprint = pinned.get_fingerprint()
        message = f"connected; {len(entries)} entries in {connection.base_dir}"
        return ConnectionTest(ok=True, message=message, fingerprint=fingerprint)


def _credentials(connection: ConnectionRecord, secret_box: SecretBox) -> dict[str, object]:
    if connection.private_key_encrypted:
        key = asyncssh.import_private_key(secret_box.decrypt(connection.private_key_encrypted))
        return {"client_keys": [key], "password": None}
    password = secret_box.decrypt(connection.password_encrypted) if connection.password_encrypted else None
    return {"client_keys": [], "password": password}
