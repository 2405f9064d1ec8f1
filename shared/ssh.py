"""The one SSH client configuration of Connect.

The catalog's "test connection" and the executor's runs connect with the same options, built here, so a
connection that tests well is one a run can use (they once differed in `preferred_auth`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncssh

from shared.catalog_records import ConnectionRecord
from shared.errors import PermanentError
from shared.secrets import SecretBox, open_field


class SshSettingsUnreadable(PermanentError):
    """The connection's pinned host key or private key cannot be read: no server is asked."""


@dataclass(frozen=True)
class SshCredentials:
    """A connection's secrets in plain text, for one connection attempt only."""

    password: str | None
    private_key: str | None

    @property
    def preferred_auth(self) -> str:
        return "publickey,password" if self.private_key else "password,keyboard-interactive"


def ssh_credentials(connection: ConnectionRecord, secrets: SecretBox) -> SshCredentials:
    password = open_field(secrets, "connection", connection, "password_encrypted")
    key = open_field(secrets, "connection", connection, "private_key_encrypted")
    return SshCredentials(password, key)


def ssh_client_options(connection: ConnectionRecord, credentials: SshCredentials) -> dict[str, Any]:
    """`asyncssh.connect` options: the pinned host key only, no agent, no ~/.ssh/config, these credentials."""
    try:
        host_key = asyncssh.import_public_key(connection.host_key)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise SshSettingsUnreadable(
            f"connection {connection.name}: pinned host key cannot be read", field="host_key"
        ) from exc
    client_keys = []
    if credentials.private_key:
        try:
            client_keys.append(asyncssh.import_private_key(credentials.private_key))
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise SshSettingsUnreadable(
                f"connection {connection.name}: the private key cannot be read", field="private_key"
            ) from exc
    return {
        "port": connection.port,
        "username": connection.username,
        "password": credentials.password,
        "client_keys": client_keys,
        "known_hosts": ([host_key], [], []),
        "agent_path": None,
        "config": None,
        "preferred_auth": credentials.preferred_auth,
    }
