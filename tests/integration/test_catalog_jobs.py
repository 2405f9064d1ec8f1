"""The guide's job actions through the REST API, against the real database, broker and scheduler."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest

from services.catalog.domain import Role
from shared.contracts import Expire, StopRun
from shared.contracts.catalog import ExpireData
from shared.messaging import Publisher, create_broker
from shared.metrics import create_metrics
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import Api, running_catalog, sftp_connection
from tests.support.waiting import eventually


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo) as api:
        yield api


async def setup_job(api: Api, name: str = "nightly", **overrides: Any) -> dict[str, Any]:
    connection_id = await sftp_connection(api, name=f"sftp-{name}")
    await api.call("POST", "/tables", json=contacts_table("contacts"))
    body = import_job(name, connection_id, "a.csv", "contacts") | overrides
    return await api.ok("POST", "/jobs", role=Role.OPERATOR, json=body)  # type: ignore[no-any-return]


def partner_job(name: str, connection_id: int) -> dict[str, Any]:
    job = import_job(name, connection_id, "feeds/*.txt", "contacts")
    job["spec"]["source"] = {
        "kind": "adobe_analytics",
        "connection_id": connection_id,
        "manifest_path": "feeds/*.txt",
    }
    return job


async def mark_running(mongo: MongoClient, settings: CommonSettings, job_id: int, run_id: str) -> None:
    """What the logsink records when a run is in flight (the catalog reads it to stop or refuse)."""
    runs = mongo[settings.database("logsink")]["runs"]
    await runs.insert_one(
        {"_id": run_id, "job_id": job_id, "status": "running", "requested_at": datetime.now(UTC)}
    )


async def test_job_view_has_every_field_of_the_all_jobs_tab(api: Api) -> None:
    job = await setup_job(api)
    assert job["id"] >= 1 and job["name"] == "nightly" and job["job_type"] == "import"
    assert job["created_by"] == "operator-user" and job["state"] == "active"
    assert job["group"] is None and job["next_run"] is None and job["previous_run"] is None
    assert job["schedule_type"] == "on_demand" and job["expiration_date"] is None
    assert job["version"] == 1 and job["partner_feed"] is False
    created = datetime.fromisoformat(job["created_at"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)


async def test_edit_with_optimistic_concurrency(api: Api) -> None:
    job = await setup_job(api)
    body = import_job("renamed", job["spec"]["source"]["connection_id"], "b.csv", "contacts") | {"version": 1}
    edited = await api.ok("PUT", f"/jobs/{job['id']}", role=Role.OPERATOR, json=body)
    assert (
        edited["name"] == "renamed" and edited["version"] == 2 and edited["spec"]["source"]["path"] == "b.csv"
    )
    assert edited["updated_by"] == "operator-user"
    stale = await api.call("PUT", f"/jobs/{job['id']}", role=Role.OPERATOR, json=body)  # still version 1
    assert stale.status_code == 409
    assert stale.json()["error"]["field"] == "version"
    patched = await api.ok(
        "PATCH", f"/jobs/{job['id']}", role=Role.OPERATOR, json={"version": 2, "name": "patched"}
    )
    assert patched["name"] == "patched" and patched["version"] == 3 and patched["spec"] == edited["spec"]
    assert (await api.ok("GET", f"/jobs/{job['id']}"))["name"] == "patched"


async def test_run_now_refusals(api: Api, mongo: MongoClient, settings: CommonSettings) -> None:
    job = await setup_job(api)
    partner = await api.ok("POST", "/jobs", json=partner_job("feed", job["spec"]["source"]["connection_id"]))
    refused = await api.call("POST", f"/jobs/{partner['id']}/run")
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == "Run now is not available for partner-feed (Omniture) jobs"

    await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR)
    inactive = await api.call("POST", f"/jobs/{job['id']}/run")
    assert inactive.status_code == 409 and "inactive" in inactive.json()["error"]["message"]
    await api.ok("POST", f"/jobs/{job['id']}/activate", role=Role.OPERATOR)

    jobs = mongo[settings.database("catalog")]["jobs"]
    await jobs.update_one(
        {"_id": job["id"]}, {"$set": {"expires_at": datetime.now(UTC) - timedelta(minutes=1)}}
    )
    expired = await api.call("POST", f"/jobs/{job['id']}/run")
    assert expired.status_code == 409 and "expired" in expired.json()["error"]["message"]


async def test_run_now_does_not_change_the_schedule(api: Api) -> None:
    schedule = {"type": "recurring", "rule": {"kind": "daily", "at": "02:00:00"}, "timezone": "Europe/Paris"}
    job = await setup_job(api, schedule=schedule)
    assert (await api.ok("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR))["run_id"] == f"{job['id']}.1"
    after = await api.ok("GET", f"/jobs/{job['id']}")
    assert after["schedule"] == job["schedule"] and after["version"] == job["version"]


async def test_dry_run_is_a_run_that_holds_nothing(api: Api) -> None:
    """A dry run is born in the scheduler like Run now, leaves the schedule as it was, and holds no job:
    a real run may start beside it (no executor here: both stay in flight)."""
    schedule = {"type": "recurring", "rule": {"kind": "daily", "at": "02:00:00"}, "timezone": "Europe/Paris"}
    created = await setup_job(api, schedule=schedule)
    job = await eventually(
        lambda: api.ok("GET", f"/jobs/{created['id']}"),
        what="the next run scheduled",
        until=lambda j: j["next_run"],
    )
    accepted = await api.call("POST", f"/jobs/{job['id']}/dry-run", role=Role.OPERATOR)
    assert accepted.status_code == 202 and accepted.json() == {"run_id": f"{job['id']}.1"}
    assert (await api.ok("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR))["run_id"] == f"{job['id']}.2"
    busy = await api.call("POST", f"/jobs/{job['id']}/dry-run", role=Role.OPERATOR)  # the real run holds it
    assert busy.status_code == 409 and "is running" in busy.json()["error"]["message"]
    after = await api.ok("GET", f"/jobs/{job['id']}")
    assert after["next_run"] == job["next_run"] and after["previous_run"] == job["previous_run"] is None
    assert after["schedule"] == job["schedule"] and after["version"] == job["version"]


async def test_dry_run_refusals(api: Api) -> None:
    job = await setup_job(api, active=False)
    inactive = await api.call("POST", f"/jobs/{job['id']}/dry-run", role=Role.OPERATOR)
    assert inactive.status_code == 202  # an inactive job may be tried before it is activated
    missing = await api.call("POST", "/jobs/999999/dry-run", role=Role.OPERATOR)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "job_id"
    assert (await api.call("POST", f"/jobs/{job['id']}/dry-run", role=None)).status_code == 401
    assert (await api.call("POST", f"/jobs/{job['id']}/dry-run", role=Role.VIEWER)).status_code == 403
    connection_id = job["spec"]["source"]["connection_id"]
    export = {"kind": "export", "source": {"kind": "table", "table": "contacts"},
              "destination": {"kind": "sftp", "connection_id": connection_id, "path_template": "x_{run_id}.csv"}}  # fmt: skip
    exporting = await api.ok("POST", "/jobs", role=Role.OPERATOR, json={"name": "out", "spec": export})
    refused = await api.call("POST", f"/jobs/{exporting['id']}/dry-run", role=Role.OPERATOR)
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == "dry run is for import jobs"
    partner = await api.ok("POST", "/jobs", json=partner_job("feed", connection_id))
    feed = await api.call("POST", f"/jobs/{partner['id']}/dry-run", role=Role.OPERATOR)
    assert feed.status_code == 409 and "partner-feed" in feed.json()["error"]["message"]


async def test_copy_rules(api: Api) -> None:
    job = await setup_job(api)
    active = await api.call("POST", f"/jobs/{job['id']}/copy", role=Role.OPERATOR, json={"name": "copy"})
    assert active.status_code == 409 and "inactive" in active.json()["error"]["message"]
    await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR)
    copy = await api.ok("POST", f"/jobs/{job['id']}/copy", role=Role.OPERATOR, json={"name": "copy"})
    assert copy["name"] == "copy" and copy["state"] == "inactive" and copy["id"] != job["id"]
    assert copy["spec"] == job["spec"] and copy["created_by"] == "operator-user"
    duplicate = await api.call("POST", f"/jobs/{job['id']}/copy", role=Role.OPERATOR, json={"name": "copy"})
    assert duplicate.status_code == 409

    partner = await api.ok(
        "POST", "/jobs", json=partner_job("feed", job["spec"]["source"]["connection_id"]) | {"active": False}
    )
    refused = await api.call(
        "POST", f"/jobs/{partner['id']}/copy", role=Role.OPERATOR, json={"name": "feed copy"}
    )
    assert refused.status_code == 409 and "partner" in refused.json()["error"]["message"]


async def test_delete_needs_confirmation_and_keeps_loaded_records(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    job = await setup_job(api)
    rows = mongo[settings.audience_database]["table_contacts"]
    await rows.insert_one({"customer_id": "C1", "email": "c1@example.com"})
    unconfirmed = await api.call("DELETE", f"/jobs/{job['id']}", role=Role.OPERATOR)
    assert unconfirmed.status_code == 400 and unconfirmed.json()["error"]["field"] == "confirm"
    assert (await api.call("GET", f"/jobs/{job['id']}")).status_code == 200
    deleted = await api.call("DELETE", f"/jobs/{job['id']}", role=Role.OPERATOR, params={"confirm": "true"})
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (await api.call("GET", f"/jobs/{job['id']}")).status_code == 404
    again = await api.call("DELETE", f"/jobs/{job['id']}", role=Role.OPERATOR, params={"confirm": "true"})
    assert again.status_code == 404 and str(job["id"]) in again.json()["error"]["message"]
    assert await rows.count_documents({}) == 1  # loaded records stay


async def test_multi_delete_is_all_or_nothing(api: Api, mongo: MongoClient, settings: CommonSettings) -> None:
    first = await setup_job(api, name="first")
    second = await api.ok(
        "POST",
        "/jobs",
        json=import_job("second", first["spec"]["source"]["connection_id"], "a.csv", "contacts"),
    )
    third = await api.ok(
        "POST",
        "/jobs",
        json=import_job("third", first["spec"]["source"]["connection_id"], "a.csv", "contacts"),
    )
    ids = [first["id"], second["id"], third["id"]]

    missing = await api.call(
        "POST", "/jobs/delete", role=Role.OPERATOR, json={"ids": [*ids, 999], "confirm": True}
    )
    assert missing.status_code == 404 and "999" in missing.json()["error"]["message"]
    await mark_running(mongo, settings, second["id"], f"{second['id']}.1")
    running = await api.call("POST", "/jobs/delete", role=Role.OPERATOR, json={"ids": ids, "confirm": True})
    assert running.status_code == 409 and str(second["id"]) in running.json()["error"]["message"]
    assert (await api.ok("GET", "/jobs"))["total"] == 3  # nothing was deleted

    deleted = await api.ok(
        "POST", "/jobs/delete", role=Role.OPERATOR, json={"ids": [first["id"], third["id"]], "confirm": True}
    )
    assert deleted == {"deleted": sorted([first["id"], third["id"]])}
    assert [j["id"] for j in (await api.ok("GET", "/jobs"))["items"]] == [second["id"]]


async def test_stop_publishes_stop_run_to_every_executor(
    api: Api, mongo: MongoClient, settings: CommonSettings, topology: Topology
) -> None:
    job = await setup_job(api)
    not_running = await api.call(
        "POST", f"/jobs/{job['id']}/stop", role=Role.OPERATOR, params={"confirm": "true"}
    )
    assert not_running.status_code == 409
    await mark_running(mongo, settings, job["id"], f"{job['id']}.4")
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        listener = await channel.declare_queue(exclusive=True)
        await listener.bind(topology.control.name)
        unconfirmed = await api.call("POST", f"/jobs/{job['id']}/stop", role=Role.OPERATOR)
        assert unconfirmed.status_code == 400
        stopped = await api.ok(
            "POST", f"/jobs/{job['id']}/stop", role=Role.OPERATOR, params={"confirm": "true"}
        )
        assert stopped == {"run_id": f"{job['id']}.4"}
        message = await listener.get(timeout=5)
        stop = StopRun.model_validate_json(message.body)
    assert stop.data.run_id == f"{job['id']}.4" and stop.data.requested_by == "operator-user"


async def test_job_changes_are_announced(api: Api, settings: CommonSettings, topology: Topology) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        listener = await channel.declare_queue(exclusive=True)
        await listener.bind(topology.events.name, routing_key="catalog.#")
        job = await setup_job(api)
        await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR)
        await api.ok("DELETE", f"/jobs/{job['id']}", role=Role.OPERATOR, params={"confirm": "true"})
        types = []
        for _ in range(3):
            message = await listener.get(timeout=5)
            types.append((json.loads(message.body)["type"], json.loads(message.body)["data"].get("active")))
    assert types == [
        ("connect.catalog.job.changed.v1", True),
        ("connect.catalog.job.changed.v1", False),
        ("connect.catalog.job.deleted.v1", None),
    ]


async def test_expired_job_is_deleted_when_the_scheduler_says_so(
    api: Api, settings: CommonSettings, topology: Topology
) -> None:
    job = await setup_job(api)
    broker = create_broker(
        settings.amqp_url,
        service="test",
        registry=create_metrics("t").registry,
        prefetch=1,
        graceful_timeout=1,
    )
    async with broker:
        await broker.connect()
        await Publisher(broker, topology).publish(
            Expire(source="test", data=ExpireData(kind="job", id=job["id"]))
        )
    await eventually(
        lambda: api.call("GET", f"/jobs/{job['id']}"),
        until=lambda response: response.status_code == 404,
        what="the expired job deleted",
        timeout=10,
        interval=0.1,
    )


async def test_listing_filters_sorts_and_pages(api: Api) -> None:
    job = await setup_job(api, name="alpha nightly")
    connection_id = job["spec"]["source"]["connection_id"]
    for name in ("beta", "gamma nightly"):
        await api.ok("POST", "/jobs", json=import_job(name, connection_id, "a.csv", "contacts"))
    await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR)
    by_name = await api.ok("GET", "/jobs", params={"name": "NIGHTLY", "sort": "-name"})
    assert [j["name"] for j in by_name["items"]] == ["gamma nightly", "alpha nightly"]
    assert [j["name"] for j in (await api.ok("GET", "/jobs", params={"state": "inactive"}))["items"]] == [
        "alpha nightly"
    ]
    page = await api.ok("GET", "/jobs", params={"sort": "name", "offset": 1, "limit": 1})
    assert page["total"] == 3 and [j["name"] for j in page["items"]] == ["beta"]
    assert (await api.ok("GET", "/jobs", params={"job_type": "export"}))["total"] == 0


async def test_spec_validation_names_the_field(api: Api) -> None:
    job = await setup_job(api)
    connection_id = job["spec"]["source"]["connection_id"]
    cases = [
        (lambda b: b["spec"]["source"].update(colour="red"), "spec.source.colour"),
        (
            lambda b: b.update(
                schedule={"type": "recurring", "rule": {"kind": "cron", "expression": "61 * * * *"}}
            ),
            "schedule.rule.expression",
        ),
        (
            lambda b: b.update(
                schedule={
                    "type": "recurring",
                    "rule": {"kind": "daily", "at": "02:00"},
                    "timezone": "Mars/Olympus",
                }
            ),
            "schedule.timezone",
        ),
        (
            lambda b: b["spec"].update(
                target={"kind": "list", "table": "contacts", "match_columns": ["EMAIL_ADDRESS_"]}
            ),
            "spec.target.table",
        ),
    ]
    for mutate, field in cases:
        body = import_job("invalid", connection_id, "a.csv", "contacts")
        mutate(body)
        response = await api.call("POST", "/jobs", json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["error"]["field"] == field, response.json()
    assert (await api.ok("GET", "/jobs"))["total"] == 1


@pytest.mark.parametrize("match_column", ["EMAIL_ADDRESS_", "CUSTOMER_ID_", "MOBILE_NUMBER_", "RIID_"])
async def test_profile_extension_import_matches_on_any_list_match_column(api: Api, match_column: str) -> None:
    people = {"name": "people", "kind": "list", "fields": [{"name": "city"}]}
    await api.ok("POST", "/tables", json=people)
    pet = {"name": "people_pet", "kind": "profile_extension", "parent_list": "people",
           "fields": [{"name": "score", "type": "integer"}]}  # fmt: skip
    await api.ok("POST", "/tables", json=pet)
    connection_id = await sftp_connection(api)
    spec = {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": connection_id, "path": "pets.csv"},
        "mapping": [{"column": "key", "field": match_column}, {"column": "score", "field": "score"}],
        "target": {"kind": "profile_extension", "table": "people_pet", "match_column": match_column},
    }
    job = await api.ok("POST", "/jobs", role=Role.OPERATOR, json={"name": "pets", "spec": spec})
    assert job["spec"]["target"]["match_column"] == match_column
    unmapped = {**spec, "mapping": [{"column": "score", "field": "score"}]}
    response = await api.call("POST", "/jobs", json={"name": "unmapped", "spec": unmapped})
    assert response.status_code == 422 and response.json()["error"]["field"] == "spec.mapping"
    assert f"map a column to {match_column}" in response.json()["error"]["message"]
    # Only the match column comes from the parent list; another list field is not the extension's.
    other = "CUSTOMER_ID_" if match_column != "CUSTOMER_ID_" else "EMAIL_ADDRESS_"
    stray = {**spec, "mapping": [*spec["mapping"], {"column": "other", "field": other}]}
    response = await api.call("POST", "/jobs", json={"name": "stray", "spec": stray})
    assert response.status_code == 422 and response.json()["error"]["field"] == "spec.mapping[2].field"
    if match_column != "RIID_":  # the extension need not (and may not) define the list's match column
        redefining = {**pet, "name": "people_pet2", "fields": [{"name": match_column}]}
        response = await api.call("POST", "/tables", json=redefining)
        assert response.status_code == 422 and "target.match_column" in response.json()["error"]["message"]


async def test_bulk_run_checks_each_job_on_its_own(api: Api) -> None:
    first = await setup_job(api, "first")
    inactive = await setup_job(api, "dormant", active=False)
    partner = await api.ok(
        "POST", "/jobs", json=partner_job("feed", first["spec"]["source"]["connection_id"])
    )
    second = await setup_job(api, "second")
    ids = [first["id"], 999_999, inactive["id"], partner["id"], second["id"]]

    response = await api.call("POST", "/jobs/run", role=Role.OPERATOR, json={"ids": ids})

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["job_id"] for r in results] == ids
    assert results[0] == {"job_id": first["id"], "run_id": f"{first['id']}.1", "error": None}
    assert results[4] == {"job_id": second["id"], "run_id": f"{second['id']}.1", "error": None}
    assert results[1]["run_id"] is None and results[1]["error"] == {
        "code": "not_found", "message": "job 999999 does not exist"
    }  # fmt: skip
    assert results[2]["error"]["code"] == "conflict" and "inactive" in results[2]["error"]["message"]
    assert results[3]["error"]["message"] == "Run now is not available for partner-feed (Omniture) jobs"

    # No executor here: the two runs stay in flight, so running them again is refused, each on its own.
    again = await api.ok("POST", "/jobs/run", role=Role.OPERATOR, json={"ids": [second["id"], first["id"]]})
    assert [(r["job_id"], r["run_id"]) for r in again["results"]] == [
        (second["id"], None),
        (first["id"], None),
    ]
    assert all("is running" in r["error"]["message"] for r in again["results"])
    forbidden = await api.call("POST", "/jobs/run", role=Role.VIEWER, json={"ids": [first["id"]]})
    assert forbidden.status_code == 403


@pytest.mark.parametrize(
    ("ids", "field"),
    [([], "ids"), ([1, 2, 3, 4, 5, 6], "ids"), ([3, 4, 3], "ids"), ([1, "2"], "ids[1]"), ([1.5], "ids[0]"),
     ([0], "ids[0]"), (None, "ids")],
)  # fmt: skip
async def test_bulk_run_validates_the_ids(api: Api, ids: Any, field: str) -> None:
    response = await api.call("POST", "/jobs/run", role=Role.OPERATOR, json={"ids": ids})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    if ids == [3, 4, 3]:
        assert "repeated: 3" in response.json()["error"]["message"]


async def test_bulk_run_reports_an_absent_scheduler_per_job(
    settings: CommonSettings, mongo: MongoClient
) -> None:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        jobs = [await setup_job(api, f"job{i}") for i in range(2)]
        response = await api.call(
            "POST", "/jobs/run", role=Role.OPERATOR, json={"ids": [j["id"] for j in jobs]}
        )
    assert response.status_code == 200
    for result in response.json()["results"]:
        assert result["run_id"] is None and result["error"]["code"] == "retryable"
        assert "nothing was started" in result["error"]["message"]
