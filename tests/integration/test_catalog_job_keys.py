"""Jobs naming OpenPGP keys (issue #17): an unknown key, a public key where Connect's private key is needed,
an expired key, each a 422 naming the field, at creation and on edit; a key a job names cannot be deleted
(409 naming the job) until no job names it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.mongo import MongoClient
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.api import contacts_table, import_job
from tests.support.catalog_api import SECRET_PASSWORD, Api, running_catalog, sftp_connection
from tests.support.gpg import Gpg, GpgKey


@pytest.fixture(scope="module")
def gpg_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GpgKey, GpgKey]]:
    with Gpg(tmp_path_factory.mktemp("gpg-jobs")) as gpg:
        yield (
            gpg.generate("Connect <c@example.com>", SECRET_PASSWORD),
            gpg.generate("Partner <p@example.com>"),
        )


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


async def setup(api: Api, gpg_keys: tuple[GpgKey, GpgKey], settings: CommonSettings,
                mongo: MongoClient) -> dict[str, int]:  # fmt: skip
    ours, partner = gpg_keys
    connection_id = await sftp_connection(api)
    await api.ok("POST", "/tables", json=contacts_table("contacts"))
    body = {"name": "ours", "kind": "private", "armored": ours.secret.decode(), "passphrase": SECRET_PASSWORD}
    our_id = (await api.ok("POST", "/keys", json=body))["id"]
    body = {"name": "partner", "kind": "public", "armored": partner.public.decode()}
    partner_id = (await api.ok("POST", "/keys", json=body))["id"]
    # A key that expired since it was added (gpg refuses to add one already expired).
    keys = mongo[settings.database("catalog")]["pgp_keys"]
    stale = await keys.find_one({"_id": partner_id})
    assert stale is not None
    await keys.insert_one(stale | {"_id": 900, "name": "stale", "expires": datetime(2021, 1, 1, tzinfo=UTC)})
    return {"connection": connection_id, "ours": our_id, "partner": partner_id, "stale": 900}


def encrypted_import(ids: dict[str, int], **pgp: Any) -> dict[str, Any]:
    body = import_job("encrypted in", ids["connection"], "in/c.csv.pgp", "contacts")
    body["spec"]["source"]["pgp"] = pgp
    return body


def encrypted_export(ids: dict[str, int], **pgp: Any) -> dict[str, Any]:
    destination = {
        "kind": "sftp",
        "connection_id": ids["connection"],
        "path_template": "out/c.csv",
        "pgp": pgp,
    }
    return {"name": "encrypted out", "spec": {"kind": "export", "source": {"kind": "table", "table": "contacts"},
                                              "destination": destination}}  # fmt: skip


BAD = [
    ("import", {"decrypt_with": 777}, "spec.source.pgp.decrypt_with", "key 777 does not exist"),
    ("import", {"decrypt_with": "partner"}, "spec.source.pgp.decrypt_with", "is a public key"),
    ("import", {"decrypt_with": "ours", "verify_with": ["partner", 778]}, "spec.source.pgp.verify_with[1]",
     "does not exist"),
    ("import", {"decrypt_with": "ours", "verify_with": ["stale"]}, "spec.source.pgp.verify_with[0]", "has expired"),
    ("export", {"encrypt_to": ["stale"]}, "spec.destination.pgp.encrypt_to[0]", "has expired"),
    ("export", {"encrypt_to": ["partner"], "sign_with": "partner"}, "spec.destination.pgp.sign_with",
     "is a public key"),
    ("export", {"encrypt_to": [], "sign_with": "ours"}, "spec.destination.pgp.encrypt_to", "at least 1"),
]  # fmt: skip


def _resolved(pgp: dict[str, Any], ids: dict[str, int]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        return ids[value] if isinstance(value, str) else value

    return {k: [one(v) for v in value] if isinstance(value, list) else one(value) for k, value in pgp.items()}


@pytest.mark.parametrize(("kind", "pgp", "field", "says"), BAD)
async def test_a_job_naming_an_unusable_key_is_a_422_naming_the_field(
    api: Api, gpg_keys: tuple[GpgKey, GpgKey], settings: CommonSettings, mongo: MongoClient,
    kind: str, pgp: dict[str, Any], field: str, says: str,
) -> None:  # fmt: skip
    ids = await setup(api, gpg_keys, settings, mongo)
    make = encrypted_import if kind == "import" else encrypted_export
    good = await api.ok("POST", "/jobs", json=make(ids, **(
        {"decrypt_with": ids["ours"]} if kind == "import" else {"encrypt_to": [ids["partner"]]})))  # fmt: skip
    bad = make(ids, **_resolved(pgp, ids))
    for method, path, body in (("POST", "/jobs", bad), ("PUT", f"/jobs/{good['id']}", {**bad, "version": 1})):
        response = await api.call(method, path, json=body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field and says in error["message"], error
    assert (await api.ok("GET", "/jobs"))["total"] == 1


async def test_a_key_a_job_names_cannot_be_deleted(
    api: Api, gpg_keys: tuple[GpgKey, GpgKey], settings: CommonSettings, mongo: MongoClient
) -> None:
    ids = await setup(api, gpg_keys, settings, mongo)
    imported = await api.ok("POST", "/jobs", json=encrypted_import(ids, decrypt_with=ids["ours"],
                                                                   verify_with=[ids["partner"]]))  # fmt: skip
    exported = await api.ok("POST", "/jobs", json=encrypted_export(ids, encrypt_to=[ids["partner"]],
                                                                   sign_with=ids["ours"], armor=True))  # fmt: skip
    assert exported["spec"]["destination"]["pgp"] == {"encrypt_to": [ids["partner"]], "sign_with": ids["ours"],
                                                      "armor": True}  # fmt: skip
    for key in ("ours", "partner"):
        response = await api.call("DELETE", f"/keys/{ids[key]}")
        assert response.status_code == 409, response.text
        message = response.json()["error"]["message"]
        assert (
            f"{imported['id']} (encrypted in)" in message and f"{exported['id']} (encrypted out)" in message
        )
    await api.ok("DELETE", f"/jobs/{imported['id']}?confirm=true")
    assert (
        await api.call("DELETE", f"/keys/{ids['partner']}")
    ).status_code == 409  # the export still names it
    await api.ok("DELETE", f"/jobs/{exported['id']}?confirm=true")
    for key in ("ours", "partner", "stale"):
        assert (await api.call("DELETE", f"/keys/{ids[key]}")).status_code == 204
