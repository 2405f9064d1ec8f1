"""`connect dev`'s mail sink: an SMTP server on loopback that keeps every message it receives as one
`.eml` file under `var/dev/mail/`, so the demo job's notifications can be read without a mail server.

It accepts any sender and recipient, without STARTTLS or authentication (loopback only): the demo's
smtp channel points at it with `starttls: false`.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"


class MailFiles:
    """The aiosmtpd handler: each message's envelope and content, written to its own file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        headers = (
            f"X-Envelope-From: {envelope.mail_from}\r\nX-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        )
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{next(self._numbers):04d}.eml"
        # A thread: the sink shares the event loop of `connect dev`, which also watches the services.
        await asyncio.to_thread(self._write, name, headers.encode() + content)
        return "250 Message accepted for delivery"

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f".{name}.part"
        partial.write_bytes(data)
        partial.rename(self.directory / name)  # a reader never sees half a message


@dataclass(frozen=True)
class MailSink:
    host: str
    port: int
    directory: Path

    def messages(self) -> list[Path]:
        """The received messages, oldest first."""
        return sorted(self.directory.glob("*.eml")) if self.directory.exists() else []


async def start_mail_sink(directory: Path, port: int = 0) -> tuple[MailSink, Any]:
    """Listen on loopback (`port` 0: a free one); returns the sink and the server to close."""
    handler = MailFiles(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="connect-dev"), HOST, port)
    bound = int(server.sockets[0].getsockname()[1])
    return MailSink(HOST, bound, directory), server
