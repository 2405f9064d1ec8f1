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
from shared.ssh import SshSettingsUnreadable, ssh_client_options, ssh_credentials

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
            options = ssh_client_options(connection, ssh_credentials(connection, secret_box))
            async with (
                asyncio.timeout(TIMEOUT),
                asyncssh.connect(connection.host, **options) as ssh,
                ssh.start_sftp_client() as sftp,
            ):
                entries = await sftp.listdir(resolve_inside(connection.base_dir, "."))
        except SshSettingsUnreadable as exc:
            return ConnectionTest(ok=False, message=exc.message)
        except asyncssh.HostKeyNotVerifiable:
            return ConnectionTest(ok=False, message="the server's host key does not match the pinned key")
        except asyncssh.PermissionDenied:
            return ConnectionTest(ok=False, message="authentication failed")
        except (OSError, TimeoutError, asyncssh.Error, ValueError) as exc:
            return ConnectionTest(ok=False, message=redactor.scrub(f"connection failed: {exc}"))
        fingerprint = asyncssh.import_public_key(connection.host_key).get_fingerprint()
        message = f"connected; {len(entries)} entries in {connection.base_dir}"
        return ConnectionTest(ok=True, message=message, fingerprint=fingerprint)
