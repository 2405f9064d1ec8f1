"""`connect dev`'s demo set-up: its mail sink keeps what it receives (a real SMTP exchange with
aiosmtplib), and the demo creates an smtp channel to the sink and a job whose rule notifies it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from services.catalog.domain import Role
from services.dev.demo import DEMO_NOTIFY_ON, _print_welcome, seed_demo
from services.dev.mail_sink import MailSink, start_mail_sink
from services.dev.processes import SystemProcesses
from services.dev.sftp_server import start_demo_sftp
from shared.mongo import MongoClient, free_port
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.catalog_api import Api, running_catalog


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[MailSink]:
    mail, server = await start_mail_sink(tmp_path / "mail")
    yield mail
    server.close()
    await server.wait_closed()


def mail(subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "connect@example.com"
    message["To"] = "you@example.com"
    message["Subject"] = subject
    message.set_content(body)
    return message


async def test_the_sink_keeps_each_message_it_receives_as_a_file(sink: MailSink) -> None:
    for number in (1, 2):
        await aiosmtplib.send(
            mail(f"Run 7.{number} succeeded", f"Demo contacts import: run 7.{number}"),
            hostname=sink.host, port=sink.port, start_tls=False,
            recipients=["you@example.com", "ops@example.com"],
        )  # fmt: skip
    files = sink.messages()
    assert len(files) == 2
    for number, path in enumerate(files, start=1):
        received = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert received["Subject"] == f"Run 7.{number} succeeded"
        assert received["X-Envelope-To"] == "you@example.com, ops@example.com"
        assert received["X-Envelope-From"] == "connect@example.com"
        assert isinstance(received, EmailMessage)
        assert f"run 7.{number}" in received.get_content()


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


async def test_the_demo_creates_a_channel_to_the_sink_and_a_job_that_notifies_it(
    api: Api, sink: MailSink, tmp_path: Path
) -> None:
    sftp, sftp_server = await start_demo_sftp(tmp_path / "sftp", free_port(), "demo", "demo-password")
    headers = {"Authorization": f"Bearer {api.tokens[Role.ADMIN]}"}
    transport = httpx.ASGITransport(app=api.app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://catalog/api/v1", headers=headers
        ) as client:
            demo = await seed_demo(client, sftp, sink)
    finally:
        sftp_server.close()
    channel = await api.ok("GET", f"/notification-channels/{demo.channel_id}")
    assert (channel["kind"], channel["host"], channel["port"], channel["starttls"]) == (
        "smtp", sink.host, sink.port, False
    )  # fmt: skip
    job = await api.ok("GET", f"/jobs/{demo.job_id}")
    assert job["notifications"] == [{"on": DEMO_NOTIFY_ON, "channels": [demo.channel_id]}]
    assert set(DEMO_NOTIFY_ON) == {"succeeded", "failed", "partial"}


def test_the_banner_says_where_to_read_received_mail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sink = MailSink("127.0.0.1", 2525, Path("var/dev/mail"))
    _print_welcome("http://127.0.0.1:8000", "token", 1, SystemProcesses(env={}, log_dir=tmp_path), sink)
    banner = capsys.readouterr().out
    assert "Mail:       var/dev/mail/" in banner and "smtp://127.0.0.1:2525" in banner
