"""A client's retry of run now under one `Idempotency-Key`, against the service processes (issue #19).

The first request's connection drops before its answer (the usual reason to retry): the retry is told to wait
while the first is in flight, then gets the first answer again; the job ran once. The catalog killed (-9)
mid-request: the retry under the key is never carried out - in flight, then "outcome unknown"."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from services.catalog.domain.idempotency import record_id_of
from services.dev.processes import SystemProcesses
from shared.collections import CatalogCollections
from shared.mongo import create_client
from shared.settings import CommonSettings
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import FAKE_HOST_KEY
from tests.support.system import admin_api, isolated_settings, service_env, start_services, started_system
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

RETRIES = 30  # each after the Retry-After the catalog asks for (1 s)


@pytest.fixture(scope="module")
def retry_settings(amqp_url: str, mongo_url: str) -> CommonSettings:
    return isolated_settings(amqp_url, mongo_url, "idem")


@pytest.fixture(scope="module")
def system(retry_settings: CommonSettings) -> Iterator[SystemProcesses]:
    env = service_env(retry_settings, CATALOG_RUN_REQUEST_TIMEOUT="10")
    with started_system(retry_settings, env, start_services("catalog", "scheduler")) as processes:
        yield processes


async def dropped_post(url: str, path: str, token: str, key: str) -> None:
    """Send a POST and hang up without reading its answer, as a client whose connection broke."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = (
        f"POST {parts.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    del reader


async def claimed(settings: CommonSettings, caller: str, key: str) -> None:
    client = create_client(settings.mongo_url or "")
    try:
        records = client[settings.database("catalog")][CatalogCollections.IDEMPOTENCY]
        await eventually(
            lambda: records.find_one({"_id": record_id_of(caller, key)}), what=f"a claim of {key}"
        )
    finally:
        await client.close()


async def retried(http: httpx.AsyncClient, path: str, key: str) -> httpx.Response:
    """The answer once the first attempt is over (the catalog says how long to wait meanwhile)."""
    for _ in range(RETRIES):
        response = await http.post(path, headers={"Idempotency-Key": key})
        if (
            response.status_code != 409
            or response.json()["error"]["code"] != "idempotency_request_in_progress"
        ):
            return response
        await asyncio.sleep(float(response.headers["Retry-After"]))
    raise AssertionError(f"the first attempt was still in progress after {RETRIES} retries")


async def new_job(http: httpx.AsyncClient) -> int:
    connection = {"name": "sftp", "host": "127.0.0.1", "port": 22, "username": "u", "password": "p",
                  "host_key": FAKE_HOST_KEY, "base_dir": "/in"}  # fmt: skip
    connection_id = (await http.post("/connections", json=connection)).json()["id"]
    assert (await http.post("/tables", json=contacts_table("contacts"))).status_code == 201
    created = await http.post("/jobs", json=import_job("nightly", connection_id, "a.csv", "contacts"))
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


async def test_a_retried_run_now_runs_once(system: SystemProcesses, retry_settings: CommonSettings) -> None:
    async with admin_api(system, retry_settings) as http:
        job_id = await new_job(http)
        token = http.headers["Authorization"].removeprefix("Bearer ")

        await dropped_post(str(http.base_url), f"/jobs/{job_id}/run", token, "run-nightly-1")
        await claimed(retry_settings, "e2e", "run-nightly-1")  # the retry comes after the first claim
        response = await retried(http, f"/jobs/{job_id}/run", "run-nightly-1")
        assert response.status_code == 202, response.text
        assert response.json() == {"run_id": f"{job_id}.1"}
        assert response.headers["Idempotent-Replayed"] == "true"
        again = await http.post(f"/jobs/{job_id}/run", headers={"Idempotency-Key": "run-nightly-1"})
        assert again.json() == response.json() and again.headers["Idempotent-Replayed"] == "true"

        audit = (await http.get("/audit", params={"kind": "job", "item_id": str(job_id)})).json()
        assert [entry["action"] for entry in audit["items"]].count("run-now") == 1, json.dumps(audit)


@pytest.fixture
def catalog_alone(amqp_url: str, mongo_url: str) -> Iterator[tuple[SystemProcesses, CommonSettings]]:
    """The catalog without a scheduler: a run-now waits its whole timeout, the window to kill it in."""
    settings = isolated_settings(amqp_url, mongo_url, "idemkill")
    env = service_env(settings, CATALOG_RUN_REQUEST_TIMEOUT="60")
    with started_system(settings, env, start_services("catalog")) as processes:
        yield processes, settings


async def test_a_request_the_catalog_died_in_is_never_carried_out_on_retry(
    catalog_alone: tuple[SystemProcesses, CommonSettings],
) -> None:
    system, settings = catalog_alone
    async with admin_api(system, settings) as http:
        job_id = await new_job(http)
        token = http.headers["Authorization"].removeprefix("Bearer ")
        await dropped_post(str(http.base_url), f"/jobs/{job_id}/run", token, "run-before-crash")
        await claimed(settings, "e2e", "run-before-crash")
    system.kill("catalog")
    system.start("catalog")
    system.wait_ready()

    async with admin_api(system, settings) as http:
        path, headers = f"/jobs/{job_id}/run", {"Idempotency-Key": "run-before-crash"}
        # At once, not after the run request's 60 s: the retry is answered from the claim, never run.
        in_flight = await http.post(path, headers=headers, timeout=10)
        assert in_flight.status_code == 409, in_flight.text
        assert in_flight.json()["error"]["code"] == "idempotency_request_in_progress"
        await claim_made_earlier(settings, "e2e", "run-before-crash", timedelta(minutes=2))
        unknown = await http.post(path, headers=headers, timeout=10)
        assert unknown.status_code == 409, unknown.text
        assert unknown.json()["error"]["code"] == "idempotency_outcome_unknown"
        audit = (await http.get("/audit", params={"kind": "job", "item_id": str(job_id)})).json()
        assert "run-now" not in [entry["action"] for entry in audit["items"]]


async def claim_made_earlier(settings: CommonSettings, caller: str, key: str, age: timedelta) -> None:
    """As if the claim had waited `age` (past the 60 s a request may take), without waiting."""
    client = create_client(settings.mongo_url or "")
    try:
        records = client[settings.database("catalog")][CatalogCollections.IDEMPOTENCY]
        changed = await records.update_one(
            {"_id": record_id_of(caller, key)}, {"$set": {"created_at": datetime.now(UTC) - age}}
        )
        assert changed.matched_count == 1
    finally:
        await client.close()
