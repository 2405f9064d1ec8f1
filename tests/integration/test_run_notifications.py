"""A run's and a group run's notifications where people look (issue #16, "Visible"): the catalog's
`GET /runs/{id}/notifications` and `GET /group-runs/{id}/notifications` read the logsink's documents
(stored here as `shared.notification_records` names them) — by rule then channel, viewer role, 404 for
an unknown run, never a secret."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.catalog.domain import Role
from services.logsink.notification_store import MongoNotifications
from services.logsink.repository import MongoRunRecords
from shared.collections import LogsinkCollections
from shared.mongo import MongoClient
from shared.notification_records import NotificationStatus
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.catalog_api import SECRET_TOKEN, Api, running_catalog
from tests.support.notifications import AT, notification, store_notifications

SHOWN = {"id", "rule", "channel_id", "channel_name", "channel_kind", "recipient", "outcome", "status",
         "status_text", "attempts", "last_error", "created_at", "sent_at"}  # fmt: skip
WHEN = AT.isoformat().replace("+00:00", "Z")


@pytest.fixture
async def api(
    settings: CommonSettings, topology: Topology, mongo: MongoClient, records: MongoRunRecords
) -> AsyncIterator[Api]:
    # the logsink's notifications store makes the index this module's reads use
    await MongoNotifications(
        mongo, settings.database("logsink"), settings.database("catalog")
    ).ensure_indexes()
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


async def store(settings: CommonSettings, mongo: MongoClient, *docs: dict[str, object]) -> None:
    await store_notifications(mongo, settings.database("logsink"), list(docs))


async def test_a_runs_notifications_by_rule_then_channel_with_status_attempts_and_last_error(
    api: Api, settings: CommonSettings, mongo: MongoClient
) -> None:
    logsink = mongo[settings.database("logsink")]
    await logsink[LogsinkCollections.RUNS].insert_one({"_id": "12.3", "job_id": 12, "run_number": 3,
                                                       "status": "failed"})  # fmt: skip
    await store(settings, mongo,
        notification("12.3", rule=1, channel_id=2, kind="smtp", status=NotificationStatus.FAILED, attempts=5,
                     last_error="SMTP 550: mailbox unavailable", recipient="ops@example.com, oncall@example.com"),
        notification("12.3", rule=0, channel_id=5, signing_secret=SECRET_TOKEN),  # a field it never shows
        notification("12.3", rule=0, channel_id=2, kind="smtp", status=NotificationStatus.PENDING, attempts=0),
        notification("12.4", rule=0, channel_id=2),  # the job's next run
        notification("12.3", rule=0, channel_id=9, owner_kind="group"),  # group 12's run 3, not job 12's
    )  # fmt: skip

    items = (await api.ok("GET", "/runs/12.3/notifications", Role.VIEWER))["items"]
    assert [(n["rule"], n["channel_id"]) for n in items] == [(0, 2), (0, 5), (1, 2)]
    assert [set(n) for n in items] == [SHOWN] * 3
    pending, sent, failed = items
    assert pending == {
        "id": "run-12.3-0-2", "rule": 0, "channel_id": 2, "channel_name": "smtp 2", "channel_kind": "smtp",
        "recipient": "ops@example.com", "outcome": "failed", "status": "pending", "status_text": "Waiting to be sent", "attempts": 0,
        "last_error": None, "created_at": WHEN, "sent_at": None,
    }  # fmt: skip
    assert sent["status"] == "sent" and sent["sent_at"] == WHEN and sent["channel_kind"] == "webhook"
    assert sent["recipient"] == "https://hooks.example.com/connect"
    assert failed["status"] == "failed" and failed["attempts"] == 5
    assert failed["status_text"] == "Failed after 5 attempts, given up"
    assert failed["last_error"] == "SMTP 550: mailbox unavailable"
    assert failed["recipient"] == "ops@example.com, oncall@example.com"

    # The logsink indexes what this reads: run and owner kind, in rule and channel order.
    keys = [
        [key for key, _ in index["key"]]
        for index in (await logsink["notifications"].index_information()).values()
    ]
    assert ["run_id", "owner_kind", "rule", "channel_id"] in keys


async def test_unknown_runs_runs_without_notifications_and_missing_tokens(
    api: Api, settings: CommonSettings, mongo: MongoClient
) -> None:
    logsink = mongo[settings.database("logsink")]
    await logsink[LogsinkCollections.RUNS].insert_one({"_id": "7.2", "job_id": 7, "status": "succeeded"})
    await store(settings, mongo, notification("7.1"))  # notifications, but no run record

    assert await api.ok("GET", "/runs/7.2/notifications", Role.VIEWER) == {"items": []}
    for unknown in ("7.1", "not-a-run"):
        response = await api.call("GET", f"/runs/{unknown}/notifications", Role.VIEWER)
        assert response.status_code == 404 and response.json()["error"]["field"] == "run_id", response.text
    missing = await api.call("GET", "/group-runs/3.1/notifications", Role.VIEWER)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "group_run_id"
    assert (await api.call("GET", "/runs/7.2/notifications", None)).status_code == 401
    assert (await api.call("GET", "/group-runs/3.1/notifications", None)).status_code == 401


async def test_a_group_runs_notifications_are_its_own_not_a_job_runs_of_the_same_id(
    api: Api, settings: CommonSettings, mongo: MongoClient
) -> None:
    logsink = mongo[settings.database("logsink")]
    await logsink[LogsinkCollections.GROUP_RUNS].insert_one({"_id": "4.2", "group_id": 4, "run_number": 2,
                                                             "status": "partial"})  # fmt: skip
    await store(settings, mongo,
        notification("4.2", owner_kind="group", rule=0, channel_id=3, outcome="partial"),
        notification("4.2", rule=0, channel_id=1),  # job 4's run 2
    )  # fmt: skip

    (only,) = (await api.ok("GET", "/group-runs/4.2/notifications", Role.VIEWER))["items"]
    assert only["id"] == "group-run-4.2-0-3" and only["outcome"] == "partial" and only["status"] == "sent"
    assert (await api.call("GET", "/group-runs/not-a-run/notifications", Role.VIEWER)).status_code == 404


async def test_the_openapi_document_describes_both_answers(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    for path in ("/api/v1/runs/{run_id}/notifications", "/api/v1/group-runs/{group_run_id}/notifications"):
        answer = document["paths"][path]["get"]["responses"]
        assert answer["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/NotificationList"
        }
        assert {"401", "404"} <= set(answer)
    assert set(document["components"]["schemas"]["NotificationView"]["properties"]) == SHOWN
