"""Tables and connections: lists, extensions, custom tables; SFTP and REST connections; export validation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.catalog.domain import Role
from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.catalog_api import SECRET_TOKEN, Api, running_catalog, sftp_connection
from tests.support.servers import Sshd


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


async def make_list(api: Api) -> dict[str, Any]:
    body = {"name": "people", "kind": "list", "fields": [{"name": "city", "type": "string"}]}
    return await api.ok("POST", "/tables", json=body)  # type: ignore[no-any-return]


async def index_names(mongo: MongoClient, settings: CommonSettings, table: str) -> dict[str, Any]:
    info = await mongo[settings.audience_database][f"table_{table}"].index_information()
    return {name: spec for name, spec in info.items() if name != "_id_"}


async def test_a_list_has_the_system_fields_and_unique_indexes(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    people = await make_list(api)
    names = [f["name"] for f in people["fields"]]
    assert names[:4] == ["RIID_", "EMAIL_ADDRESS_", "CUSTOMER_ID_", "MOBILE_NUMBER_"] and names[-1] == "city"
    indexes = await index_names(mongo, settings, "people")
    assert {"riid", "match_EMAIL_ADDRESS_", "match_CUSTOMER_ID_", "match_MOBILE_NUMBER_"} <= set(indexes)
    assert all(spec.get("unique") for spec in indexes.values())
    reserved = await api.call(
        "POST", "/tables", json={"name": "bad", "kind": "list", "fields": [{"name": "RIID_"}]}
    )
    assert reserved.status_code == 422 and reserved.json()["error"]["field"] == "fields"


async def test_extension_tables_belong_to_a_list(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    orphan = {"name": "prefs", "kind": "profile_extension", "fields": [{"name": "colour"}]}
    assert (await api.call("POST", "/tables", json=orphan)).status_code == 422
    assert (await api.call("POST", "/tables", json=orphan | {"parent_list": "nope"})).status_code == 404
    await make_list(api)
    prefs = await api.ok("POST", "/tables", json=orphan | {"parent_list": "people"})
    assert prefs["parent_list"] == "people" and prefs["fields"][0]["name"] == "RIID_"
    assert "riid" in await index_names(mongo, settings, "prefs")
    custom_with_parent = {
        "name": "x",
        "kind": "custom",
        "primary_key": ["id"],
        "fields": [{"name": "id"}],
        "parent_list": "people",
    }
    assert (await api.call("POST", "/tables", json=custom_with_parent)).status_code == 422


async def test_custom_tables_need_a_primary_key(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    no_key = await api.call("POST", "/tables", json={"name": "products", "fields": [{"name": "sku"}]})
    assert no_key.status_code == 422 and no_key.json()["error"]["field"] == "primary_key"
    body = {
        "name": "products",
        "primary_key": ["sku", "store"],
        "fields": [{"name": "sku"}, {"name": "store"}],
    }
    await api.ok("POST", "/tables", json=body)
    assert (await index_names(mongo, settings, "products"))["primary_key"]["key"] == [
        ("sku", 1),
        ("store", 1),
    ]


async def test_rest_connection_keeps_its_token_secret(
    api: Api, mongo: MongoClient, settings: CommonSettings
) -> None:
    body = {
        "kind": "rest",
        "name": "responsys",
        "base_url": "https://api.example.com/rest",
        "token": SECRET_TOKEN,
    }
    created = await api.ok("POST", "/connections", json=body)
    assert created["kind"] == "rest" and created["auth"] == "token" and "token" not in created
    stored = await mongo[settings.database("catalog")]["connections"].find_one({"_id": created["id"]})
    assert stored is not None and SECRET_TOKEN not in str(stored)
    bad_url = await api.call("POST", "/connections", json=body | {"name": "x", "base_url": "not a url"})
    assert bad_url.status_code == 422 and bad_url.json()["error"]["field"] == "base_url"


async def test_host_key_fetch_and_connection_test_against_real_sshd(api: Api, sshd: Sshd) -> None:
    fetched = await api.ok("POST", "/connections/host-key", json={"host": sshd.host, "port": sshd.port})
    assert fetched["host_key"].split()[:2] == sshd.host_key.split()[:2]
    assert fetched["fingerprint"].startswith("SHA256:")
    body = {"name": "real", "host": sshd.host, "port": sshd.port, "username": sshd.username,
            "private_key": sshd.private_key, "host_key": fetched["host_key"], "base_dir": str(sshd.root)}  # fmt: skip
    good = await api.ok("POST", "/connections", json=body)
    result = await api.ok("POST", f"/connections/{good['id']}/test")
    assert result["ok"] is True and result["fingerprint"] == fetched["fingerprint"]
    wrong = await api.ok(
        "POST", "/connections", json=body | {"name": "pinned-wrong", "host_key": sshd.other_host_key}
    )
    mismatch = await api.ok("POST", f"/connections/{wrong['id']}/test")
    assert mismatch == {
        "ok": False,
        "message": "the server's host key does not match the pinned key",
        "fingerprint": None,
    }


async def test_export_jobs_are_validated_against_list_and_extensions(api: Api) -> None:
    await make_list(api)
    await api.ok(
        "POST",
        "/tables",
        json={
            "name": "prefs",
            "kind": "profile_extension",
            "parent_list": "people",
            "fields": [{"name": "colour"}],
        },
    )
    connection_id = await sftp_connection(api, base_dir="/out")
    spec = {
        "kind": "export",
        "source": {"kind": "list", "table": "people", "extension_fields": [{"table": "prefs", "fields": ["colour"]}],
                   "filter": {"conditions": [{"field": "prefs.colour", "op": "eq", "value": "red"}]}},
        "fields": ["EMAIL_ADDRESS_", "city", "colour"],
        "destination": {"kind": "sftp", "connection_id": connection_id, "path_template": "daily/people_{date}_{run_id}.csv"},
    }  # fmt: skip
    job = await api.ok("POST", "/jobs", role=Role.OPERATOR, json={"name": "people export", "spec": spec})
    assert job["job_type"] == "export"
    bad_field = {**spec, "fields": ["nope"]}
    response = await api.call("POST", "/jobs", json={"name": "bad", "spec": bad_field})
    assert response.status_code == 422 and response.json()["error"]["field"] == "spec.fields[0]"
    bad_template = {**spec, "destination": {**spec["destination"], "path_template": "x_{user}.csv"}}
    response = await api.call("POST", "/jobs", json={"name": "bad", "spec": bad_template})
    assert (
        response.status_code == 422 and response.json()["error"]["field"] == "spec.destination.path_template"
    )
    escaping = {**spec, "destination": {**spec["destination"], "path_template": "../../etc/{date}"}}
    response = await api.call("POST", "/jobs", json={"name": "bad", "spec": escaping})
    assert response.status_code == 422 and "base directory" in response.json()["error"]["message"]


async def test_list_import_match_columns(api: Api) -> None:
    await make_list(api)
    connection_id = await sftp_connection(api)
    spec = {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": connection_id, "path": "people.csv"},
        "mapping": [{"column": "email", "field": "EMAIL_ADDRESS_"}, {"column": "city", "field": "city"}],
        "target": {"kind": "list", "table": "people", "match_columns": ["EMAIL_ADDRESS_"], "update_on_match": "no_update"},
    }  # fmt: skip
    await api.ok("POST", "/jobs", json={"name": "people import", "spec": spec})
    unmapped = {**spec, "target": {**spec["target"], "match_columns": ["CUSTOMER_ID_"]}}
    response = await api.call("POST", "/jobs", json={"name": "bad", "spec": unmapped})
    assert response.status_code == 422 and "CUSTOMER_ID_" in response.json()["error"]["message"]
    too_many = {
        **spec,
        "target": {**spec["target"], "match_columns": ["EMAIL_ADDRESS_", "CUSTOMER_ID_", "RIID_"]},
    }
    response = await api.call("POST", "/jobs", json={"name": "bad", "spec": too_many})
    assert response.status_code == 422 and response.json()["error"]["field"] == "spec.target.match_columns"
