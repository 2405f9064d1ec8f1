"""Real receivers of notifications for tests: a webhook endpoint on loopback and an aiosmtpd SMTP server.

async with WebhookReceiver(answers=[503, 503, 200]) as hook:   # then 200 for ever
    ... hook.url, hook.requests (each: headers, body), hook.hold (an Event the answer waits for)

with SmtpSink(username="mailer", password="...", tls_context=ctx) as smtp:   # ctx: STARTTLS required
    ... smtp.port, smtp.messages (each: mail_from, rcpt_tos, the parsed message, whether it came over TLS)
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from standardwebhooks.webhooks import Webhook

from shared.mongo import free_port

REASONS = {
    200: "OK",
    400: "Bad Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Unavailable",
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def verified(self, secret: str) -> Any:
        """The body, after the Standard Webhooks signature check a receiver does (raises if it fails)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class WebhookReceiver:
    """A plain asyncio HTTP/1.1 server: records each POST, answers the next of `answers` (then 200)."""

    answers: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None  # when set up: the answer waits until it is set
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()  # no handler left waiting
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(headers, body))
            self.arrived.set()
            if self.hold is not None:
                await self.hold.wait()
            status = self.answers.pop(0) if self.answers else 200
            reply = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            writer.write(reply.encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the sender went away (killed mid-delivery)
        finally:
            writer.close()


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool  # the session was upgraded with STARTTLS before the mail came


class _Collect:
    def __init__(self, messages: list[Mail]) -> None:
        self.messages = messages

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        tls = session.ssl is not None
        self.messages.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), parsed, tls))
        return "250 OK"


class SmtpSink:
    """aiosmtpd on loopback (its own thread); with a username, it takes only that login."""

    def __init__(
        self,
        *,
        username: str = "",
        password: str = "",
        echo_refused: bool = False,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.messages: list[Mail] = []
        self.port = free_port()
        self.logins: list[str] = []
        kwargs: dict[str, Any] = {}
        if username:

            def authenticate(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                    username.encode(), password.encode()
                )  # fmt: skip
                if ok:
                    self.logins.append(username)
                # A careless server quotes what it refused (the sender must scrub it before storing).
                said = (
                    f"535 5.7.8 bad password {data.password.decode()!r}" if echo_refused and not ok else None
                )
                return AuthResult(success=ok, handled=False, message=said)  # aiosmtpd then answers 535

            kwargs = {
                "authenticator": authenticate,
                "auth_require_tls": tls_context is not None,
                "auth_exclude_mechanism": ["LOGIN"],
            }
        if tls_context is not None:  # STARTTLS offered, and nothing but EHLO/STARTTLS/QUIT before it
            kwargs |= {"tls_context": tls_context, "require_starttls": True}
        self.controller = Controller(_Collect(self.messages), hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
