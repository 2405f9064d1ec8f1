"""Notifications made by the logsink's batch write path and sent by its delivery loop, against the real
database, a local HTTP receiver that verifies Standard Webhooks signatures, and an aiosmtpd server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.logsink.delivery import Delivery, DeliveryPolicy
from services.logsink.domain import plan
from services.logsink.notification_store import MongoNotifications
from services.logsink.notifier import NotificationMaker
from services.logsink.repository import MongoRunRecords
from services.logsink.senders import SmtpSender, WebhookSender
from services.logsink.service import LogsinkService
from shared.collections import CatalogCollections
from shared.contracts import Envelope, GroupRunFinished, GroupRunStarted, RunFinished, RunRequested
from shared.contracts.groups import GroupRunFinishedData, GroupRunStartedData
from shared.contracts.jobs import JobSnapshot
from shared.contracts.runs import RunCounts, RunFinishedData, RunRequestedData, RunStatus, Trigger
from shared.mongo import MongoClient
from shared.notification_records import NotificationRecord
from shared.secrets import Binding, SecretBox
from shared.settings import CommonSettings
from tests.conftest import TEST_SECRET_KEY
from tests.integration.test_logsink_records import NoMetrics
from tests.support.receivers import SmtpSink, WebhookReceiver
from tests.support.tls import local_ca
from tests.support.waiting import eventually

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a Standard Webhooks secret (base64 of 24 bytes)
API = "https://connect.example"
SPEC = {
    "kind": "import",
    "source": {"kind": "sftp", "connection_id": 1, "path": "a.csv"},
    "mapping": [{"column": "id", "field": "id"}],
    "target": {"kind": "custom", "table": "t"},
}


class CountingSends:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def notification(self, channel_kind: str, status: str) -> None:
        self.seen.append((channel_kind, status))


@dataclass
class World:
    service: LogsinkService
    outbox: MongoNotifications
    delivery: Delivery
    catalog: Any
    box: SecretBox

    async def job(self, job_id: int, rules: list[dict[str, Any]], name: str = "Nightly import") -> None:
        await self.catalog[CatalogCollections.JOBS].insert_one(
            {"_id": job_id, "name": name, "notifications": rules}
        )

    async def group(self, group_id: int, rules: list[dict[str, Any]]) -> None:
        await self.catalog[CatalogCollections.GROUPS].insert_one(
            {"_id": group_id, "name": "g", "notifications": rules}
        )

    async def webhook(self, channel_id: int, url: str) -> None:
        await self.catalog[CatalogCollections.NOTIFICATION_CHANNELS].insert_one(
            {"_id": channel_id, "kind": "webhook", "name": f"hook {channel_id}", "url": url,
             "secret_encrypted": self.box.encrypt(SECRET, Binding("notification_channel", channel_id, "secret_encrypted")), "created_at": T0, "created_by": "admin"}
        )  # fmt: skip

    async def smtp(
        self, channel_id: int, port: int, *, username: str = "", password: str = "", starttls: bool = False
    ) -> None:
        await self.catalog[CatalogCollections.NOTIFICATION_CHANNELS].insert_one(
            {"_id": channel_id, "kind": "smtp", "name": "ops mail", "host": "127.0.0.1", "port": port,
             "starttls": starttls, "username": username,
             "password_encrypted": self.box.encrypt(password, Binding("notification_channel", channel_id, "password_encrypted")) if password else None,
             "from_address": "connect@example.com", "to": ["ops@example.com", "oncall@example.com"],
             "created_at": T0, "created_by": "admin"}
        )  # fmt: skip

    async def record(self, *events: Envelope) -> None:
        await self.service.write_batch([plan(e.model_dump(mode="json")) for e in events])

    async def notifications(self, run_id: str) -> list[dict[str, Any]]:
        return await self.outbox.notifications.find({"run_id": run_id}).sort("_id", 1).to_list()

    async def settled(self, notification_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            return await self.outbox.get(notification_id)

        return await eventually(
            probe, until=lambda d: d["status"] != "pending", what=f"{notification_id} settled"
        )


@pytest.fixture
async def world(
    records: MongoRunRecords, mongo: MongoClient, settings: CommonSettings
) -> AsyncIterator[World]:
    outbox = MongoNotifications(mongo, settings.database("logsink"), settings.database("catalog"))
    await outbox.ensure_indexes()
    box = SecretBox(TEST_SECRET_KEY)
    webhooks = WebhookSender(timeout=2)
    policy = DeliveryPolicy(attempts=3, backoff=0.05, max_backoff=0.2, lease=5, poll_interval=0.05)
    delivery = Delivery(
        outbox, {"webhook": webhooks, "smtp": SmtpSender(timeout=5)}, box, CountingSends(), policy
    )
    maker = NotificationMaker(outbox, api_url=API, on_created=delivery.wake)
    service = LogsinkService(records, NoMetrics(), notify=maker.make)
    await delivery.start()
    yield World(service, outbox, delivery, mongo[settings.database("catalog")], box)
    await delivery.stop()
    await webhooks.close()
    await mongo.drop_database(settings.database("catalog"))


def requested(
    run_id: str, *, trigger: Trigger = Trigger.ON_DEMAND, group_run_id: str | None = None
) -> RunRequested:
    job_id = int(run_id.split(".")[0])
    snapshot = JobSnapshot.model_validate(
        {"job_id": job_id, "name": "Nightly import", "job_type": "import", "spec": SPEC}
    )
    group = {"group_run_id": group_run_id, "group_id": 3, "group_name": "Morning"} if group_run_id else {}
    data = RunRequestedData(
        run_id=run_id, job=snapshot, trigger=trigger, requested_by="test", requested_at=T0, **group
    )
    return RunRequested(source="test", data=data)


def finished(
    run_id: str, status: RunStatus, *, timed_out: bool = False, error: str | None = None
) -> RunFinished:
    data = RunFinishedData(
        run_id=run_id, job_id=int(run_id.split(".")[0]), status=status, counts=RunCounts(read=10, inserted=8, rejected=2),
        started_at=T0, finished_at=T0 + timedelta(seconds=4), error=error, timed_out=timed_out,
    )  # fmt: skip
    return RunFinished(source="test", data=data)


async def test_a_failed_run_posts_a_signed_webhook_the_receiver_verifies(world: World) -> None:
    async with WebhookReceiver() as hook:
        await world.webhook(1, hook.url)
        await world.job(12, [{"on": ["failed"], "channels": [1]}])
        await world.record(
            requested("12.7"), finished("12.7", RunStatus.FAILED, timed_out=True, error="timed out after 2h")
        )
        sent = await world.settled("run-12.7-0-1")
        assert sent["status"] == "sent" and sent["attempts"] == 1 and sent["sent_at"] is not None
        assert (
            sent["outcome"] == "failed"
            and sent["recipient"] == hook.url
            and sent["channel_kind"] == "webhook"
        )
        assert NotificationRecord.from_document(sent).attempts == 1  # as the catalog reads it
        [request] = hook.requests
        assert request.headers["webhook-id"] == "run-12.7-0-1"
        body = request.verified(SECRET)  # the signature holds
        assert body["type"] == "run.finished" and body["notification_id"] == "run-12.7-0-1"
        run = body["run"]
        assert (run["run_id"], run["job_id"], run["job_name"], run["status"]) == (
            "12.7",
            12,
            "Nightly import",
            "failed",
        )
        assert (
            run["timed_out"] is True
            and run["trigger"] == "on_demand"
            and run["error"] == "timed out after 2h"
        )
        assert run["counts"]["rejected"] == 2 and run["finished_at"] == "2026-05-01T12:00:04Z"
        assert body["links"]["logs"] == f"{API}/api/v1/runs/12.7/logs"
        assert ("webhook", "sent") in world.delivery.metrics.seen  # type: ignore[attr-defined]


async def test_503_twice_then_200_is_sent_at_the_third_attempt(world: World) -> None:
    async with WebhookReceiver(answers=[503, 503, 200]) as hook:
        await world.webhook(1, hook.url)
        await world.job(5, [{"on": ["succeeded"], "channels": [1]}])
        await world.record(requested("5.1"), finished("5.1", RunStatus.SUCCEEDED))
        sent = await world.settled("run-5.1-0-1")
        assert (sent["status"], sent["attempts"]) == ("sent", 3)
        assert sent["last_error"] == "the receiver answered HTTP 503"
        assert set(hook.ids()) == {"run-5.1-0-1"} and len(hook.requests) == 3


async def test_400_fails_at_once_and_always_503_fails_after_the_budget(world: World) -> None:
    async with WebhookReceiver(answers=[400]) as refusing, WebhookReceiver(answers=[503] * 10) as down:
        await world.webhook(1, refusing.url)
        await world.webhook(2, down.url)
        await world.job(5, [{"on": ["failed"], "channels": [1, 2]}])
        await world.record(requested("5.2"), finished("5.2", RunStatus.FAILED))
        refused = await world.settled("run-5.2-0-1")
        assert (refused["status"], refused["attempts"]) == ("failed", 1)
        assert refused["last_error"] == "the receiver answered HTTP 400"
        given_up = await world.settled("run-5.2-0-2")
        assert (given_up["status"], given_up["attempts"]) == ("failed", 3) and len(down.requests) == 3


async def test_a_mail_goes_through_smtp_with_auth_subject_recipients_and_body(world: World) -> None:
    with SmtpSink(username="mailer", password="s3cret-pass") as smtp:
        await world.smtp(4, smtp.port, username="mailer", password="s3cret-pass")
        await world.job(12, [{"on": ["partial", "failed"], "channels": [4]}])
        await world.record(requested("12.8"), finished("12.8", RunStatus.PARTIAL))
        sent = await world.settled("run-12.8-0-4")
        assert sent["status"] == "sent", sent
        assert sent["recipient"] == "ops@example.com, oncall@example.com"
        [mail] = smtp.messages
        assert smtp.logins == ["mailer"]
        assert mail.mail_from == "connect@example.com"
        assert mail.rcpt_tos == ["ops@example.com", "oncall@example.com"]
        assert mail.message["Subject"] == "Connect: job 12 'Nightly import' finished with rejects (run 12.8)"
        assert mail.message["Message-ID"] == "<run-12.8-0-4@connect.notifications>"
        text = mail.message.get_content()
        assert "Outcome: partial" in text and "rejected 2" in text
        assert f"Log: {API}/api/v1/runs/12.8/logs" in text


async def test_a_wrong_smtp_password_fails_without_storing_it(world: World) -> None:
    with SmtpSink(username="mailer", password="right-password", echo_refused=True) as smtp:
        await world.smtp(4, smtp.port, username="mailer", password="wrong-password")
        await world.job(12, [{"on": ["failed"], "channels": [4]}])
        await world.record(requested("12.9"), finished("12.9", RunStatus.FAILED))
        failed = await world.settled("run-12.9-0-4")
        assert failed["status"] == "failed" and failed["attempts"] == 1 and "535" in failed["last_error"]
        assert "bad password" in failed["last_error"] and "***" in failed["last_error"]  # echoed, scrubbed
        assert "wrong-password" not in str(failed) and smtp.messages == []


async def test_a_receiver_that_does_not_answer_in_time_is_retried_then_given_up(world: World) -> None:
    await world.delivery.stop()  # this test's sender has a short timeout
    webhooks = WebhookSender(timeout=0.3)
    policy = DeliveryPolicy(attempts=2, backoff=0.05, max_backoff=0.1, lease=5, poll_interval=0.05)
    slow = Delivery(world.outbox, {"webhook": webhooks}, world.box, CountingSends(), policy)
    async with WebhookReceiver(hold=asyncio.Event()) as hook:  # holds every answer
        await world.webhook(1, hook.url)
        await world.job(5, [{"on": ["failed"], "channels": [1]}])
        await world.record(requested("5.3"), finished("5.3", RunStatus.FAILED))
        await slow.start()
        try:
            failed = await world.settled("run-5.3-0-1")
        finally:
            await slow.stop()
            await webhooks.close()
        assert (failed["status"], failed["attempts"]) == ("failed", 2)
        assert failed["last_error"] == "the receiver did not answer in time" and len(hook.requests) == 2


async def test_a_redelivered_end_and_a_crash_before_the_insert_give_one_notification(
    world: World, records: MongoRunRecords
) -> None:
    async with WebhookReceiver() as hook:
        await world.webhook(1, hook.url)
        await world.job(6, [{"on": ["failed"], "channels": [1]}])
        end = finished("6.1", RunStatus.FAILED)
        # the record written, then a crash before the notification's insert: the end is redelivered
        await LogsinkService(records, NoMetrics()).write_batch(
            [plan(requested("6.1").model_dump(mode="json"))]
        )
        await LogsinkService(records, NoMetrics()).write_batch([plan(end.model_dump(mode="json"))])
        assert await world.notifications("6.1") == []
        await world.record(end)
        await world.record(end, end)
        # a second, different end of the same run is refused by the record: it notifies nothing
        await world.record(finished("6.1", RunStatus.SUCCEEDED))
        [only] = await world.notifications("6.1")
        assert only["_id"] == "run-6.1-0-1" and only["outcome"] == "failed"
        await world.settled(only["_id"])
        assert hook.ids() == ["run-6.1-0-1"]


async def test_a_dry_run_never_notifies_nor_counts_as_the_previous_run(world: World) -> None:
    await world.webhook(1, "http://127.0.0.1:9/never")
    await world.job(8, [{"on": ["failed", "succeeded", "recovered"], "channels": [1]}])
    await world.record(requested("8.1"), finished("8.1", RunStatus.FAILED))
    await world.record(requested("8.2", trigger=Trigger.DRY_RUN), finished("8.2", RunStatus.SUCCEEDED))
    await world.record(requested("8.3"), finished("8.3", RunStatus.SUCCEEDED))
    await world.record(requested("8.4", trigger=Trigger.DRY_RUN), finished("8.4", RunStatus.FAILED))
    await world.record(requested("8.5"), finished("8.5", RunStatus.SUCCEEDED))
    assert await world.notifications("8.2") == [] and await world.notifications("8.4") == []
    outcomes = {run: [n["outcome"] for n in await world.notifications(run)] for run in ("8.1", "8.3", "8.5")}
    assert outcomes == {"8.1": ["failed"], "8.3": ["recovered"], "8.5": ["succeeded"]}


async def test_recovered_alone_hears_of_the_first_success_after_failures(world: World) -> None:
    await world.webhook(1, "http://127.0.0.1:9/never")
    await world.job(9, [{"on": ["recovered"], "channels": [1]}])
    statuses = [
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.FAILED,
        RunStatus.PARTIAL,
        RunStatus.SUCCEEDED,
    ]
    for number, status in enumerate(statuses, start=1):
        await world.record(requested(f"9.{number}"), finished(f"9.{number}", status))
    owed = {f"9.{n}": len(await world.notifications(f"9.{n}")) for n in range(1, 6)}
    assert owed == {"9.1": 0, "9.2": 0, "9.3": 0, "9.4": 1, "9.5": 0}


async def test_a_deleted_channel_is_recorded_failed(world: World) -> None:
    await world.job(10, [{"on": ["failed"], "channels": [77]}])
    await world.record(requested("10.1"), finished("10.1", RunStatus.FAILED))
    [gone] = await world.notifications("10.1")
    assert gone["status"] == "failed" and gone["last_error"] == "channel 77 no longer exists"
    assert gone["channel_kind"] == "unknown"
    assert NotificationRecord.from_document(gone).status == "failed"  # as the catalog reads it


async def test_a_group_notifies_once_naming_each_member_and_members_keep_their_own_rules(
    world: World,
) -> None:
    async with WebhookReceiver() as hook:
        await world.webhook(1, hook.url)
        await world.group(3, [{"on": ["failed"], "channels": [1]}])
        await world.job(21, [{"on": ["succeeded"], "channels": [1]}])  # a member job's own rule
        started = GroupRunStarted(
            source="test",
            data=GroupRunStartedData(
                group_run_id="3.4", group_id=3, group_name="Morning", job_ids=(21, 22), trigger=Trigger.SCHEDULED,
                started_at=T0,
            ),
        )  # fmt: skip
        end = GroupRunFinished(
            source="test",
            data=GroupRunFinishedData(
                group_run_id="3.4", group_id=3, status=RunStatus.FAILED, member_run_ids=("21.1", "22.1"),
                finished_at=T0 + timedelta(seconds=9), error="job 22 failed",
            ),
        )  # fmt: skip
        await world.record(started, requested("21.1", trigger=Trigger.GROUP, group_run_id="3.4"))
        await world.record(finished("21.1", RunStatus.SUCCEEDED))
        await world.record(requested("22.1", trigger=Trigger.GROUP, group_run_id="3.4"))
        await world.record(finished("22.1", RunStatus.FAILED), end)
        await world.record(end)  # redelivered
        [group] = await world.notifications("3.4")
        await world.settled(group["_id"])
        await world.settled("run-21.1-0-1")
        await eventually(lambda: len(hook.requests), until=lambda n: n == 2, what="two webhooks")
        by_id = {r.headers["webhook-id"]: r.verified(SECRET) for r in hook.requests}
        assert set(by_id) == {"group-run-3.4-0-1", "run-21.1-0-1"}
        body = by_id["group-run-3.4-0-1"]
        assert body["type"] == "group_run.finished" and body["outcome"] == "failed"
        members = [(m["run_id"], m["status"]) for m in body["group_run"]["members"]]
        assert members == [("21.1", "succeeded"), ("22.1", "failed")]
        assert body["group_run"]["group_name"] == "Morning" and body["group_run"]["error"] == "job 22 failed"


async def test_a_skipped_run_notifies_a_rule_on_skipped_and_is_passed_over_for_recovered(
    world: World,
) -> None:
    await world.webhook(1, "http://127.0.0.1:9/never")
    await world.job(10, [{"on": ["skipped", "recovered"], "channels": [1]}])
    statuses = [RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.SUCCEEDED, RunStatus.SKIPPED]
    for number, status in enumerate(statuses, start=1):
        await world.record(requested(f"10.{number}"), finished(f"10.{number}", status))
    said = {f"10.{n}": [x["outcome"] for x in await world.notifications(f"10.{n}")] for n in range(1, 5)}
    # an empty file says nothing of the feed's health: the success after it still ends the failures
    assert said == {"10.1": [], "10.2": ["skipped"], "10.3": ["recovered"], "10.4": ["skipped"]}


async def test_a_mail_goes_over_starttls_to_a_server_whose_certificate_is_trusted(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = local_ca(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # how a deployment trusts a private CA (OpenSSL)
    with SmtpSink(username="mailer", password="s3cret-pass", tls_context=ca.server_context) as smtp:
        await world.smtp(4, smtp.port, username="mailer", password="s3cret-pass", starttls=True)
        await world.job(12, [{"on": ["failed"], "channels": [4]}])
        await world.record(requested("12.10"), finished("12.10", RunStatus.FAILED))
        sent = await world.settled("run-12.10-0-4")
        assert sent["status"] == "sent", sent
        [mail] = smtp.messages
        assert mail.tls and smtp.logins == ["mailer"]  # the password only went over TLS


async def test_starttls_to_an_untrusted_certificate_or_a_server_without_it_fails_at_once(
    world: World, tmp_path: Path
) -> None:
    ca = local_ca(tmp_path / "ca")  # not trusted: SSL_CERT_FILE unset
    with SmtpSink(tls_context=ca.server_context) as untrusted, SmtpSink() as plain:
        await world.smtp(4, untrusted.port, starttls=True)
        await world.smtp(5, plain.port, starttls=True)
        await world.job(12, [{"on": ["failed"], "channels": [4, 5]}])
        await world.record(requested("12.11"), finished("12.11", RunStatus.FAILED))
        refused = await world.settled("run-12.11-0-4")
        no_tls = await world.settled("run-12.11-0-5")
    # A certificate that does not verify, or no STARTTLS, will not change by retrying: given up at once.
    assert (refused["status"], refused["attempts"]) == ("failed", 1), refused
    assert "certificate" in refused["last_error"]
    assert (no_tls["status"], no_tls["attempts"]) == ("failed", 1), no_tls
    assert "STARTTLS" in no_tls["last_error"]
    assert untrusted.messages == [] and plain.messages == []
