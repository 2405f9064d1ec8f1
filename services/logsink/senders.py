"""Sending one notification: a signed webhook (httpx) or a mail (aiosmtplib).

A sender raises `SendFailed` saying whether the failure is worth retrying; its message never holds
a secret (the delivery loop scrubs it with the channel's secrets before storing it anyway).
"""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Protocol

import aiosmtplib
import httpx
from standardwebhooks.webhooks import Webhook

from services.logsink import messages, outcomes
from shared.catalog_records import NotificationChannelRecord

Document = dict[str, Any]
MESSAGE_ID_DOMAIN = "connect.notifications"


class SendFailed(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Sender(Protocol):
    async def send(
        self, notification: Document, channel: NotificationChannelRecord, secret: str | None
    ) -> None: ...


def signed_request(
    notification_id: str, body: Document, secret: str, now: datetime
) -> tuple[bytes, dict[str, str]]:
    """The body's bytes and the Standard Webhooks headers signing them."""
    content = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "Connect-Notifications/1",
        "webhook-id": notification_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(notification_id, now, content),
    }
    return content, headers


class WebhookSender:
    def __init__(self, timeout: float) -> None:
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def close(self) -> None:
        await self.client.aclose()

    async def send(
        self, notification: Document, channel: NotificationChannelRecord, secret: str | None
    ) -> None:
        if not secret:
            raise SendFailed("the channel has no signing secret", transient=False)
        content, headers = signed_request(
            notification["_id"], notification["payload"], secret, datetime.now(UTC)
        )
        try:
            response = await self.client.post(channel.url, content=content, headers=headers)
        except httpx.TimeoutException:
            raise SendFailed("the receiver did not answer in time", transient=True) from None
        except httpx.HTTPError as exc:
            raise SendFailed(f"could not reach the receiver: {type(exc).__name__}", transient=True) from None
        if 200 <= response.status_code < 300:
            return
        status = response.status_code
        raise SendFailed(f"the receiver answered HTTP {status}", transient=outcomes.transient_http(status))


def mail(notification: Document, channel: NotificationChannelRecord) -> EmailMessage:
    body = notification["payload"]
    message = EmailMessage()
    message["From"] = channel.from_address
    message["To"] = ", ".join(channel.to)
    message["Subject"] = messages.subject(body)
    message["Date"] = format_datetime(datetime.now(UTC))
    # Stable across re-sends: a mail client (or a filter) can tell a repeat from a new one.
    message["Message-ID"] = f"<{notification['_id']}@{MESSAGE_ID_DOMAIN}>"
    message.set_content(messages.mail_text(body))
    return message


# What aiosmtplib says (an SMTPException, no subclass) when the server's EHLO does not list STARTTLS.
NO_STARTTLS = "STARTTLS extension not supported"


class SmtpSender:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def close(self) -> None:
        return None

    async def send(
        self, notification: Document, channel: NotificationChannelRecord, secret: str | None
    ) -> None:
        auth: dict[str, Any] = (
            {"username": channel.username, "password": secret or ""} if channel.username else {}
        )
        try:
            await aiosmtplib.send(
                mail(notification, channel),
                hostname=channel.host,
                port=channel.port,
                start_tls=channel.starttls,
                timeout=self.timeout,
                **auth,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            transient = all(400 <= code < 500 for code in codes)
            raise SendFailed(
                f"the SMTP server refused the recipients ({codes})", transient=transient
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            transient = 400 <= exc.code < 500
            raise SendFailed(
                f"the SMTP server answered {exc.code} {exc.message}", transient=transient
            ) from None
        except ssl.SSLCertVerificationError as exc:  # a retry meets the same certificate
            raise SendFailed(f"the SMTP server's TLS certificate does not verify: {exc.verify_message}",
                             transient=False) from None  # fmt: skip
        except aiosmtplib.SMTPException as exc:
            if NO_STARTTLS in str(exc):  # the channel asks for TLS the server lacks
                raise SendFailed(f"the SMTP server does not offer STARTTLS: {exc}", transient=False) from None
            raise SendFailed(f"could not talk to the SMTP server: {exc}", transient=True) from None
        except OSError as exc:  # connection refused or reset, timeout, TLS handshake
            raise SendFailed(f"could not talk to the SMTP server: {exc}", transient=True) from None
