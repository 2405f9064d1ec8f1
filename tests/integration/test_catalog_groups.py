"""Groups through the REST API: members in order, one group per job, reorder, delete keeps the jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.catalog.domain import Role
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import Api, running_catalog, sftp_connection


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo) as api:
        yield api


async def three_jobs(api: Api) -> list[int]:
    connection_id = await sftp_connection(api)
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    jobs = [
        await api.ok("POST", "/jobs", json=import_job(f"job {i}", connection_id, "a.csv", "contacts"))
        for i in range(3)
    ]
    return [job["id"] for job in jobs]


async def test_group_view_has_every_field_of_the_groups_tab(api: Api) -> None:
    ids = await three_jobs(api)
    group = await api.ok("POST", "/groups", role=Role.OPERATOR, json={"name": "nightly load", "job_ids": ids})
    assert group["id"] >= 1 and group["name"] == "nightly load" and group["created_by"] == "operator-user"
    assert group["created_at"] and group["next_run"] is None and group["previous_run"] is None
    assert group["schedule_type"] == "on_demand" and group["expiration_date"] is None
    assert [m["id"] for m in group["jobs"]] == ids and group["continue_on_failure"] is False
    member = await api.ok("GET", f"/jobs/{ids[0]}")
    assert member["group"] == "nightly load" and member["group_id"] == group["id"]


async def test_a_job_belongs_to_at_most_one_group(api: Api) -> None:
    ids = await three_jobs(api)
    await api.ok("POST", "/groups", json={"name": "first", "job_ids": ids[:2]})
    taken = await api.call("POST", "/groups", json={"name": "second", "job_ids": ids[1:]})
    assert taken.status_code == 409 and str(ids[1]) in taken.json()["error"]["message"]
    missing = await api.call("POST", "/groups", json={"name": "third", "job_ids": [ids[2], 999]})
    assert missing.status_code == 404
    assert (await api.ok("GET", "/groups"))["total"] == 1


async def test_reorder_and_stale_edit(api: Api) -> None:
    ids = await three_jobs(api)
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": ids})
    body = {"version": 1, "name": "g", "job_ids": list(reversed(ids)), "continue_on_failure": True}
    reordered = await api.ok("PUT", f"/groups/{group['id']}", role=Role.OPERATOR, json=body)
    assert [m["id"] for m in reordered["jobs"]] == list(reversed(ids)) and reordered[
        "continue_on_failure"
    ] is True
    assert (await api.call("PUT", f"/groups/{group['id']}", json=body)).status_code == 409
    shrunk = await api.ok("PUT", f"/groups/{group['id']}", json=body | {"version": 2, "job_ids": [ids[0]]})
    assert [m["id"] for m in shrunk["jobs"]] == [ids[0]]
    assert (await api.ok("GET", f"/jobs/{ids[2]}"))["group"] is None  # released


async def test_deleting_a_group_keeps_its_jobs(api: Api) -> None:
    ids = await three_jobs(api)
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": ids})
    assert (await api.call("DELETE", f"/groups/{group['id']}")).status_code == 400
    assert (await api.call("DELETE", f"/groups/{group['id']}", params={"confirm": "true"})).status_code == 204
    assert (await api.call("GET", f"/groups/{group['id']}")).status_code == 404
    jobs = await api.ok("GET", "/jobs")
    assert jobs["total"] == 3 and all(job["group"] is None for job in jobs["items"])


async def test_deleting_a_job_removes_it_from_its_group(api: Api) -> None:
    ids = await three_jobs(api)
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": ids})
    await api.ok("DELETE", f"/jobs/{ids[1]}", params={"confirm": "true"})
    assert [m["id"] for m in (await api.ok("GET", f"/groups/{group['id']}"))["jobs"]] == [ids[0], ids[2]]


async def test_inactive_group_cannot_run(api: Api) -> None:
    ids = await three_jobs(api)
    group = await api.ok("POST", "/groups", json={"name": "g", "job_ids": ids, "active": False})
    refused = await api.call("POST", f"/groups/{group['id']}/run", role=Role.OPERATOR)
    assert refused.status_code == 409 and "inactive" in refused.json()["error"]["message"]
    not_running = await api.call("POST", f"/groups/{group['id']}/stop", params={"confirm": "true"})
    assert not_running.status_code == 409


async def test_a_member_id_the_database_cannot_hold_is_refused(api: Api) -> None:
    """Found by the API fuzz: an id past 8 bytes failed the member lookup with a 500."""
    for job_ids in ([2**63], [0]):
        response = await api.call(
            "POST", "/groups", role=Role.OPERATOR, json={"name": "g", "job_ids": job_ids}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == "job_ids[0]"
