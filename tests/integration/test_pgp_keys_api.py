"""OpenPGP keys as catalog resources (admin adds and deletes, everyone signed in reads): keys made by Debian's
gpg, private keys and passphrases encrypted at rest and never answered, bad keys refused by a 422 naming
the field (issue #17, PGP)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from services.catalog.domain import Role
from shared.mongo import MongoClient
from shared.pgp import decrypt_stream
from shared.secrets import Binding, SecretBox
from shared.settings import CommonSettings
from shared.topology import Topology
from tests.support.catalog_api import SECRET_PASSWORD, Api, running_catalog
from tests.support.gpg import Gpg, GpgKey


@dataclass(frozen=True)
class Keys:
    gpg: Gpg
    ours: GpgKey  # protected by SECRET_PASSWORD, which no answer may show
    partner: GpgKey
    expired: GpgKey
    revoked: GpgKey


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    with Gpg(tmp_path_factory.mktemp("gpg-api")) as gpg:
        yield Keys(
            gpg,
            ours=gpg.generate("Connect <connect@example.com>", SECRET_PASSWORD),
            partner=gpg.generate("Partner <feeds@partner.example>", expire="2y"),
            expired=gpg.generate("Old <old@partner.example>", expire="1d", created="20200101T000000"),
            revoked=gpg.revoke(gpg.generate("Gone <gone@partner.example>")),
        )


@pytest.fixture
async def api(settings: CommonSettings, topology: Topology, mongo: MongoClient) -> AsyncIterator[Api]:
    async with running_catalog(settings, mongo, with_scheduler=False) as api:
        yield api


def public(key: GpgKey, name: str = "partner", **overrides: Any) -> dict[str, Any]:
    return {"name": name, "kind": "public", "armored": key.public.decode()} | overrides


def private_binary(keys: Keys, name: str = "ours", **overrides: Any) -> dict[str, Any]:
    binary = keys.gpg.run("--export-secret-keys", keys.ours.fingerprint, passphrase=SECRET_PASSWORD)
    body = {"name": name, "kind": "private", "base64": base64.b64encode(binary).decode(),
            "passphrase": SECRET_PASSWORD}  # fmt: skip
    return body | overrides


async def refused(api: Api, body: dict[str, Any], field: str, says: str) -> None:
    response = await api.call("POST", "/keys", json=body)
    assert response.status_code == 422, (field, response.text)
    error = response.json()["error"]
    assert error["field"] == field and says in error["message"], error


async def test_keys_are_added_read_listed_and_deleted_without_their_secrets(
    api: Api, keys: Keys, settings: CommonSettings, mongo: MongoClient
) -> None:
    partner = await api.ok("POST", "/keys", json=public(keys.partner))
    assert partner["kind"] == "public" and partner["fingerprint"] == keys.partner.fingerprint
    assert partner["user_ids"] == ["Partner <feeds@partner.example>"]
    assert partner["algorithm"] == "EdDSA ed25519" and {"encrypt", "sign"} <= set(partner["usage"])
    assert partner["expires"] is not None and partner["expired"] is False
    ours = await api.ok("POST", "/keys", json=private_binary(keys))
    assert ours["kind"] == "private" and ours["fingerprint"] == keys.ours.fingerprint
    assert ours["expires"] is None and ours["public_key"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK")

    read = await api.ok("GET", f"/keys/{ours['id']}", role=Role.VIEWER)
    same = {"created_at"}  # stored to the millisecond
    assert {k: v for k, v in read.items() if k not in same} == {
        k: v for k, v in ours.items() if k not in same
    }
    assert set(read) == set(partner)  # the same fields whatever the kind
    listed = await api.ok("GET", "/keys", role=Role.VIEWER)
    assert listed["total"] == 2 and [k["name"] for k in listed["items"]] == ["partner", "ours"]
    # (every answer is also scanned for the passphrase and "PRIVATE KEY" by running_catalog)

    stored = await mongo[settings.database("catalog")]["pgp_keys"].find_one({"_id": ours["id"]})
    assert stored is not None
    secret_b64 = private_binary(keys)["base64"]
    assert (
        SECRET_PASSWORD not in str(stored) and secret_b64 not in str(stored) and "PRIVATE" not in str(stored)
    )
    box = SecretBox(settings.secret_key or "")
    assert (
        box.decrypt(stored["passphrase_encrypted"], Binding("pgp_key", stored["_id"], "passphrase_encrypted"))
        == SECRET_PASSWORD
    )
    material = base64.b64decode(
        box.decrypt(
            stored["private_key_encrypted"], Binding("pgp_key", stored["_id"], "private_key_encrypted")
        )
    )
    # What a run will do with the stored key: decrypt a partner's file with it.
    message = keys.gpg.encrypt(b"email\na@example.com\n", [keys.ours.fingerprint], sign_with=keys.partner)
    partner_doc = await mongo[settings.database("catalog")]["pgp_keys"].find_one({"_id": partner["id"]})
    assert partner_doc is not None and partner_doc["private_key_encrypted"] is None

    async def once() -> AsyncIterator[bytes]:
        yield message

    stream = decrypt_stream(once(), material, SECRET_PASSWORD, [partner_doc["public_key"].encode()])
    assert b"".join([chunk async for chunk in stream]) == b"email\na@example.com\n"

    assert (
        await api.call("POST", "/keys", json=public(keys.partner, name="x"), role=Role.OPERATOR)
    ).status_code == 403
    assert (await api.call("DELETE", f"/keys/{ours['id']}", role=Role.OPERATOR)).status_code == 403
    assert (await api.call("GET", "/keys", role=None)).status_code == 401
    assert (
        await api.call("POST", "/keys", json=public(keys.partner))
    ).status_code == 409  # the name is taken
    assert (await api.call("DELETE", f"/keys/{ours['id']}")).status_code == 204
    assert (await api.call("GET", f"/keys/{ours['id']}")).status_code == 404
    assert (await api.call("DELETE", f"/keys/{ours['id']}")).status_code == 404
    assert (await api.ok("GET", "/keys"))["total"] == 1


async def test_bad_keys_are_refused_naming_the_field(api: Api, keys: Keys) -> None:
    await refused(api, public(keys.partner, armored="hello"), "armored", "not an ASCII-armoured key")
    garbage = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n"
    await refused(api, public(keys.partner, armored=garbage), "armored", "not an OpenPGP key")
    await refused(api, private_binary(keys, base64="%%%"), "base64", "not base64")
    await refused(api, {"name": "k", "kind": "public"}, "armored", "one of them")
    both = public(keys.partner) | {"base64": base64.b64encode(keys.partner.public).decode()}
    await refused(api, both, "armored", "one of them")
    await refused(api, public(keys.partner, kind="private"), "armored", "this is a public key")
    await refused(api, public(keys.ours, armored=keys.ours.secret.decode(), passphrase=None), "passphrase",
                  "none was given")  # fmt: skip
    await refused(
        api, public(keys.partner, armored=keys.partner.secret.decode()), "armored", "this is a private key"
    )
    await refused(api, public(keys.partner, passphrase="x"), "passphrase", "a public key has no passphrase")
    await refused(api, public(keys.expired), "armored", "has expired since 2020-01-02")
    await refused(api, public(keys.revoked), "armored", "is revoked")
    await refused(api, private_binary(keys, passphrase="not it"), "passphrase", "wrong passphrase")
    await refused(api, private_binary(keys, passphrase=None), "passphrase", "none was given")
    await refused(api, private_binary(keys, kind="elsewhere"), "kind", "")
    assert (await api.ok("GET", "/keys"))["total"] == 0
