"""An embedded SFTP server (asyncssh) so a newcomer sees real jobs run in dev mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh


@dataclass(frozen=True)
class DemoSftp:
    port: int
    username: str
    password: str
    host_key: str  # public, OpenSSH format: what a user pins on the connection
    root: Path


async def start_demo_sftp(root: Path, port: int, username: str, password: str) -> tuple[DemoSftp, Any]:
    key = asyncssh.generate_private_key("ssh-ed25519")

    class Server(asyncssh.SSHServer):
        def begin_auth(self, _: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, user: str, secret: str) -> bool:
            return user == username and secret == password

    def sftp_factory(channel: Any) -> asyncssh.SFTPServer:
        return asyncssh.SFTPServer(channel, chroot=str(root).encode())

    server = await asyncssh.create_server(
        Server, "127.0.0.1", port, server_host_keys=[key], sftp_factory=sftp_factory, allow_scp=False
    )
    public = key.export_public_key().decode().strip()
    return DemoSftp(port, username, password, public, root), server
