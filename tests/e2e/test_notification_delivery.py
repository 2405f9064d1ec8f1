"""Notifications through the four services as processes, to real receivers.

A failed run mails its outcome through a real SMTP server, and the CLI lists it as sent. A webhook
notification survives a SIGKILL of the logsink mid-delivery and arrives under one id: a run-now of
a job with a webhook rule ends; the logsink posts
the notification; the receiver holds the request open while the logsink is killed. The restarted
logsink finds the notification still pending, claims it once its lease has run out and sends it
again under the same `webhook-id`: the receiver sees one distinct id, the notification ends `sent`.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.dev.processes import SystemProcesses
from shared.collections import LogsinkCollections
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from tests.support.api import contacts_table, import_job
from tests.support.receivers import SmtpSink, WebhookReceiver
from tests.support.servers import Sshd
from tests.support.system import admin_api, admin_token, isolated_settings, service_env, started_system
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def notify_settings(amqp_url: str, mongo_url: str) -> CommonSettings:
    return isolated_settings(amqp_url, mongo_url, "e2enotify")


@pytest.fixture(scope="module")
def notify_system(notify_settings: CommonSettings) -> Iterator[SystemProcesses]:
    # A short lease, so the restarted logsink re-sends soon; longer than a send's timeout.
    env = service_env(
        notify_settings,
        CONNECT_GRACEFUL_TIMEOUT="5",
        LOGSINK_NOTIFY_TIMEOUT="4",
        LOGSINK_NOTIFY_LEASE="6",
        LOGSINK_NOTIFY_POLL_INTERVAL="0.5",
    )
    with started_system(notify_settings, env, SystemProcesses.start_all) as processes:
        yield processes


async def test_a_logsink_killed_mid_delivery_sends_the_webhook_again_under_the_same_id(
    notify_system: SystemProcesses,
    notify_settings: CommonSettings,
    sshd: Sshd,
    mongo: MongoClient,
    unique: str,
) -> None:
    path = sshd.root / unique / "contacts.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["id", "email", "points"], ["C1", "a@example.com", "1"]])
    hold = asyncio.Event()
    async with WebhookReceiver(hold=hold) as hook, admin_api(notify_system, notify_settings) as api:
        job_id, secret = await job_with_webhook_rule(api, sshd, unique, hook.url)
        started = await api.post(f"/jobs/{job_id}/run")
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]

        await asyncio.wait_for(hook.arrived.wait(), 60)  # the logsink is sending; the answer is held
        notify_system.kill("logsink")
        hold.set()  # later requests are answered at once
        notify_system.start("logsink")
        await asyncio.to_thread(notify_system.wait_ready)

        notifications = mongo[notify_settings.database("logsink")][LogsinkCollections.NOTIFICATIONS]

        async def the_notification() -> dict[str, Any] | None:
            return await notifications.find_one({"run_id": run_id})

        sent = await eventually(
            the_notification, until=lambda d: d["status"] == "sent", what="the notification sent", timeout=40
        )
        assert len(hook.requests) >= 2, "the killed delivery was sent again"
        assert set(hook.ids()) == {sent["_id"]} == {f"run-{run_id}-0-1"}
        body = hook.requests[-1].verified(secret)
        assert body["run"]["run_id"] == run_id and body["outcome"] == "succeeded"
        run = (await api.get(f"/runs/{run_id}")).json()
        assert run["status"] == "succeeded", run  # the run's end survived the kill too


async def test_a_failed_run_mails_its_owner_and_the_cli_shows_the_mail_sent(
    notify_system: SystemProcesses, notify_settings: CommonSettings, sshd: Sshd, unique: str
) -> None:
    with SmtpSink() as smtp:
        async with admin_api(notify_system, notify_settings) as api:
            channel = await api.post("/notification-channels", json={
                "kind": "smtp", "name": f"ops mail {unique}", "host": "127.0.0.1", "port": smtp.port,
                "starttls": False, "from_address": "connect@example.com",
                "to": ["ops@example.com", "oncall@example.com"],
            })  # fmt: skip
            assert channel.status_code == 201, channel.text
            connection = await new_connection(api, sshd, unique)
            table = f"mailed_{unique}"
            assert (await api.post("/tables", json=contacts_table(table))).status_code == 201
            job = import_job(f"mailed {unique}", connection, f"{unique}/never-delivered.csv", table)
            job["notifications"] = [{"on": ["failed"], "channels": [channel.json()["id"]]}]
            created = await api.post("/jobs", json=job)
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            run_id = (await api.post(f"/jobs/{job_id}/run")).json()["run_id"]  # no such file: it fails

            await eventually(lambda: smtp.messages or None, what="the mail", timeout=60)
            [mail] = smtp.messages
            assert mail.message["Subject"] == f"Connect: job {job_id} 'mailed {unique}' failed (run {run_id})"
            assert sorted(mail.rcpt_tos) == ["oncall@example.com", "ops@example.com"]
            text = mail.message.get_content()
            assert "Outcome: failed" in text and "Error:" in text and f"/#/runs/{run_id}" in text

        env = {**os.environ, "CONNECT_API_URL": f"{notify_system.processes['catalog'].url}/api/v1",
               "CONNECT_TOKEN": await admin_token(notify_settings), "HOME": str(sshd.root / unique)}  # fmt: skip
        shown = await asyncio.to_thread(
            subprocess.run, [str(Path(sys.executable).parent / "connect"), "runs", "show", run_id, "--output", "json"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        [listed] = json.loads(shown.stdout)["notifications"]
        assert listed["status"] == "sent" and listed["channel_name"] == f"ops mail {unique}"
        assert listed["recipient"] == "ops@example.com, oncall@example.com"


async def new_connection(api: httpx.AsyncClient, sshd: Sshd, unique: str) -> int:
    connection = await api.post(
        "/connections",
        json={
            "name": f"sshd-{unique}", "host": sshd.host, "port": sshd.port, "username": sshd.username,
            "private_key": sshd.private_key, "host_key": sshd.host_key, "base_dir": str(sshd.root),
        },
    )  # fmt: skip
    assert connection.status_code == 201, connection.text
    return int(connection.json()["id"])


async def job_with_webhook_rule(api: httpx.AsyncClient, sshd: Sshd, unique: str, url: str) -> tuple[int, str]:
    channel = await api.post(
        "/notification-channels", json={"kind": "webhook", "name": f"hook {unique}", "url": url}
    )
    assert channel.status_code == 201, channel.text
    connection = await new_connection(api, sshd, unique)
    table = f"contacts_{unique}"
    assert (await api.post("/tables", json=contacts_table(table))).status_code == 201
    job = import_job(f"notified {unique}", connection, f"{unique}/contacts.csv", table)
    job["notifications"] = [{"on": ["succeeded", "failed"], "channels": [channel.json()["id"]]}]
    created = await api.post("/jobs", json=job)
    assert created.status_code == 201, created.text
    return int(created.json()["id"]), str(channel.json()["signing_secret"])
