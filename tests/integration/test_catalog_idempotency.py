"""`Idempotency-Key` on the POSTs that create or run (issue #19), through the REST API on the real database,
broker and scheduler: a retry answers the first answer again and nothing is done twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.catalog.adapters.idempotency_records import MongoIdempotencyRecords
from services.catalog.api.idempotency import COVERED
from services.catalog.domain import Role
from services.catalog.domain.idempotency import Attempt, fingerprint
from shared.collections import CatalogCollections
from shared.mongo import MongoClient
from shared.secrets import secret_box
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.integration.test_catalog_jobs import setup_job
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import Api, running_catalog, sftp_connection


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo) as api:
        yield api


# Doing these twice changes nothing more than once, or they are checked against the current state.
NOT_COVERED = {
    "/api/v1/connections/host-key", "/api/v1/connections/{connection_id}/test", "/api/v1/jobs/delete",
    "/api/v1/groups/{group_id}/activate", "/api/v1/groups/{group_id}/deactivate", "/api/v1/groups/{group_id}/stop",
    "/api/v1/jobs/{job_id}/activate", "/api/v1/jobs/{job_id}/deactivate", "/api/v1/jobs/{job_id}/stop",
}  # fmt: skip


def keyed(key: str) -> dict[str, dict[str, str]]:
    return {"headers": {"Idempotency-Key": key}}


async def actions(api: Api, kind: str, item_id: int, action: str) -> int:
    page = await api.ok("GET", "/audit", params={"kind": kind, "item_id": str(item_id), "limit": 500})
    return sum(1 for entry in page["items"] if entry["action"] == action)


def records(mongo: MongoClient, settings: CommonSettings) -> MongoIdempotencyRecords:
    return MongoIdempotencyRecords(mongo, settings.database("catalog"), secret_box(settings))


async def test_a_retried_create_answers_the_first_answer_and_creates_once(api: Api) -> None:
    connection_id = await sftp_connection(api)
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    body = import_job("nightly", connection_id, "a.csv", "contacts")
    first = await api.call("POST", "/jobs", role=Role.OPERATOR, json=body, **keyed("create-nightly"))
    # The same body with its keys in another order and other spacing is the same request.
    reordered = httpx.Request("POST", "/", json=dict(reversed(body.items()))).content.replace(b",", b", ")
    again = await api.call(
        "POST", "/jobs", role=Role.OPERATOR, content=reordered,
        headers={"Idempotency-Key": "create-nightly", "Content-Type": "application/json"},
    )  # fmt: skip
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert again.headers["content-type"] == first.headers["content-type"]
    page = await api.ok("GET", "/jobs", params={"name": "nightly"})
    assert page["total"] == 1
    assert await actions(api, "job", first.json()["id"], "created") == 1


async def test_a_retried_run_now_runs_once(api: Api) -> None:
    job = await setup_job(api)
    first = await api.call("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR, **keyed("run-1"))
    again = await api.call("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR, **keyed("run-1"))
    # Without the key the second would be refused (the first run is in flight: no executor here).
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() == {"run_id": f"{job['id']}.1"}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await actions(api, "job", job["id"], "run-now") == 1


async def test_concurrent_duplicates_run_once(api: Api) -> None:
    job = await setup_job(api)
    path = f"/jobs/{job['id']}/run"
    answers = await asyncio.gather(
        *(api.call("POST", path, role=Role.OPERATOR, **keyed("twice-at-once")) for _ in range(2))
    )
    ran = [a for a in answers if a.status_code == 202 and "Idempotent-Replayed" not in a.headers]
    others = [a for a in answers if a not in ran]
    assert len(ran) == 1 and len(others) == 1, [(a.status_code, a.text) for a in answers]
    other = others[0]
    if other.status_code == 409:
        assert other.json()["error"]["code"] == "idempotency_request_in_progress"
        assert other.json()["error"]["field"] == "Idempotency-Key" and other.headers["Retry-After"] == "1"
    else:
        assert other.headers["Idempotent-Replayed"] == "true" and other.json() == ran[0].json()
    assert await actions(api, "job", job["id"], "run-now") == 1
    retried = await api.call("POST", path, role=Role.OPERATOR, **keyed("twice-at-once"))
    assert retried.json() == ran[0].json() and retried.headers["Idempotent-Replayed"] == "true"


async def test_the_key_on_another_request_is_refused(api: Api) -> None:
    job = await setup_job(api)
    await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR)
    other = await api.ok("POST", f"/jobs/{job['id']}/copy", role=Role.OPERATOR, json={"name": "x"})
    copy = await api.call(
        "POST", f"/jobs/{job['id']}/copy", role=Role.OPERATOR, json={"name": "a"}, **keyed("k")
    )
    assert copy.status_code == 201
    for path, body in (
        (f"/jobs/{job['id']}/copy", {"name": "b"}),
        (f"/jobs/{other['id']}/copy", {"name": "a"}),
    ):
        refused = await api.call("POST", path, role=Role.OPERATOR, json=body, **keyed("k"))
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "idempotency_key_reused" and error["field"] == "Idempotency-Key"
    assert {j["name"] for j in (await api.ok("GET", "/jobs"))["items"]} == {"nightly", "x", "a"}


async def test_keys_are_each_callers_own(api: Api) -> None:
    job = await setup_job(api)
    await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR)
    by_operator = await api.call(
        "POST", f"/jobs/{job['id']}/copy", role=Role.OPERATOR, json={"name": "mine"}, **keyed("shared")
    )
    by_admin = await api.call(
        "POST", f"/jobs/{job['id']}/copy", role=Role.ADMIN, json={"name": "theirs"}, **keyed("shared")
    )
    assert by_operator.status_code == by_admin.status_code == 201
    assert "Idempotent-Replayed" not in by_admin.headers
    assert (
        by_operator.json()["created_by"] == "operator-user" and by_admin.json()["created_by"] == "admin-user"
    )


async def test_a_final_refusal_is_kept_and_given_again(api: Api) -> None:
    missing = await api.call("POST", "/jobs/999/run", role=Role.OPERATOR, **keyed("nothing"))
    again = await api.call("POST", "/jobs/999/run", role=Role.OPERATOR, **keyed("nothing"))
    assert missing.status_code == again.status_code == 404
    assert again.json() == missing.json() and again.headers["Idempotent-Replayed"] == "true"


async def test_an_interrupted_first_attempt_is_never_run_again(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    """A claim without an answer is what a catalog killed mid-request leaves: wait, then "outcome unknown"."""
    job = await setup_job(api)
    path = f"/api/v1/jobs/{job['id']}/run"
    store = records(mongo, settings)
    print_ = fingerprint("POST", path, "", b"")
    now = datetime.now(UTC).replace(microsecond=0)
    assert await store.claim(Attempt("operator-user", "fresh", print_, now)) is None
    assert await store.claim(Attempt("operator-user", "dead", print_, now - timedelta(minutes=2))) is None

    in_flight = await api.call("POST", path.removeprefix("/api/v1"), role=Role.OPERATOR, **keyed("fresh"))
    assert in_flight.status_code == 409 and in_flight.headers["Retry-After"] == "1"
    assert in_flight.json()["error"]["code"] == "idempotency_request_in_progress"
    dead = await api.call("POST", path.removeprefix("/api/v1"), role=Role.OPERATOR, **keyed("dead"))
    assert dead.status_code == 409 and "Retry-After" not in dead.headers
    assert dead.json()["error"]["code"] == "idempotency_outcome_unknown"
    assert "new key" in dead.json()["error"]["message"]
    assert await actions(api, "job", job["id"], "run-now") == 0
    assert (await store.find("operator-user", "dead")) == Attempt(
        "operator-user", "dead", print_, now - timedelta(minutes=2)
    )


async def test_an_answer_older_than_24_hours_is_forgotten(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    body = contacts_table("contacts")
    assert (await api.call("POST", "/tables", json=body, **keyed("table"))).status_code == 201
    kept = mongo[settings.database("catalog")][CatalogCollections.IDEMPOTENCY]
    await kept.update_many({}, {"$set": {"created_at": datetime.now(UTC) - timedelta(hours=25)}})
    again = await api.call("POST", "/tables", json=body, **keyed("table"))
    # Run anew, not replayed: the table now exists.
    assert again.status_code == 409 and "Idempotent-Replayed" not in again.headers
    replayed = await api.call("POST", "/tables", json=body, **keyed("table"))
    assert replayed.status_code == 409 and replayed.headers["Idempotent-Replayed"] == "true"


async def test_a_new_token_is_given_again_but_kept_encrypted(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    body = {"name": "ci", "role": "operator"}
    first = await api.call("POST", "/tokens", json=body, **keyed("token-ci"))
    again = await api.call("POST", "/tokens", json=body, **keyed("token-ci"))
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    tokens = (await api.ok("GET", "/tokens", params={"limit": 500}))["items"]
    assert [t["name"] for t in tokens].count("ci") == 1
    stored = await mongo[settings.database("catalog")][CatalogCollections.IDEMPOTENCY].find_one({})
    assert stored is not None and first.json()["token"] not in str(stored)
    assert stored["answer"]["body_encrypted"].startswith("v2:")


@pytest.mark.parametrize(
    "value",
    [b"", b" ", b"x" * 256, "clé".encode(), b"tab\there"],
    ids=["empty", "blank", "too-long", "not-ascii", "control"],
)
async def test_an_invalid_key_is_refused(api: Api, value: bytes) -> None:
    headers = {"Authorization": f"Bearer {api.tokens[Role.ADMIN]}", "Idempotency-Key": value}
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        response = await client.post("/api/v1/tables", json=contacts_table("contacts"), headers=headers)
        listed = (await client.get("/api/v1/tables", headers=headers)).json()
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_idempotency_key" and error["field"] == "Idempotency-Key"
    assert listed["total"] == 0


async def test_quoted_and_bare_keys_are_one_key_and_two_headers_are_refused(api: Api) -> None:
    first = await api.call("POST", "/tables", json=contacts_table("contacts"), **keyed('"abc"'))
    again = await api.call("POST", "/tables", json=contacts_table("contacts"), **keyed("abc"))
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    headers = [
        ("Authorization", f"Bearer {api.tokens[Role.ADMIN]}"),
        ("Idempotency-Key", "a"),
        ("Idempotency-Key", "b"),
    ]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app), base_url="http://catalog"
    ) as client:
        twice = await client.post("/api/v1/tables", json=contacts_table("other"), headers=headers)
    assert twice.status_code == 422 and twice.json()["error"]["field"] == "Idempotency-Key"


async def test_a_passing_failure_releases_the_key(
    settings: CommonSettings, topology: Topology, mongo: MongoClient
) -> None:
    """No scheduler answers: 503, nothing was started, so a retry under the key may run (it is not kept)."""
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        job = await setup_job(api)
        response = await api.call("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR, **keyed("later"))
        assert response.status_code == 503
        assert await records(mongo, settings).find("operator-user", "later") is None


async def test_without_the_header_nothing_is_kept(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    job = await setup_job(api)
    await api.ok("POST", f"/jobs/{job['id']}/run", role=Role.OPERATOR)
    kept = mongo[settings.database("catalog")][CatalogCollections.IDEMPOTENCY]
    assert await kept.count_documents({}) == 0
    # Nor on a POST that is not covered: the header is ignored there, even an invalid one.
    await api.ok("POST", f"/jobs/{job['id']}/deactivate", role=Role.OPERATOR, **keyed("ignored"))
    await api.ok("POST", f"/jobs/{job['id']}/activate", role=Role.OPERATOR, **keyed("x" * 300))
    assert await kept.count_documents({}) == 0


async def test_openapi_documents_the_header_on_each_covered_post(api: Api) -> None:
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as client:
        document: dict[str, Any] = (await client.get("/api/v1/openapi.json")).json()
    posts = {path for path, item in document["paths"].items() if "post" in item}
    # A new POST must be decided on: covered (it creates or runs) or not.
    assert posts == COVERED | NOT_COVERED
    for path in posts:
        operation = document["paths"][path]["post"]
        names = [p["name"] for p in operation.get("parameters", [])]
        assert ("Idempotency-Key" in names) == (path in COVERED), path
        if path in COVERED:
            assert {"409", "422"} <= set(operation["responses"]), path
    run = document["paths"]["/api/v1/jobs/{job_id}/run"]["post"]
    assert "Idempotent-Replayed" in run["responses"]["202"]["headers"]
