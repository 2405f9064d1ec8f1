"""Reading PGP keys (shared.pgp.inspect_key) made by an independent tool: Debian's gpg in its own home."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from shared.pgp import KeyExpired, KeyRevoked, KeyUnreadable, WrongPassphrase, inspect_key
from tests.support.gpg import Gpg, GpgKey


@dataclass(frozen=True)
class Keys:
    gpg: Gpg
    ours: GpgKey  # protected by a passphrase
    bare: GpgKey  # no passphrase, expires in a year
    expired: GpgKey
    revoked: GpgKey


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    with Gpg(tmp_path_factory.mktemp("gpg-keys")) as gpg:
        yield Keys(
            gpg,
            ours=gpg.generate("Connect Imports <imports@example.com>", "our passphrase"),
            bare=gpg.generate("Partner: Data <data@partner.example>", expire="1y"),
            expired=gpg.generate("Old <old@partner.example>", expire="1d", created="20200101T000000"),
            revoked=gpg.revoke(gpg.generate("Gone <gone@partner.example>")),
        )


async def test_a_public_key_reads_as_its_fingerprint_user_ids_algorithm_and_dates(keys: Keys) -> None:
    inspected = await inspect_key(keys.bare.public)
    facts = inspected.facts
    assert facts.fingerprint == keys.bare.fingerprint
    assert facts.user_ids == ("Partner: Data <data@partner.example>",)  # a ':' in a user id survives
    assert facts.algorithm == "EdDSA ed25519"
    assert facts.has_secret is False
    assert {"encrypt", "sign"} <= set(facts.usage)
    assert facts.created <= datetime.now(UTC)
    assert facts.expires is not None and 360 <= (facts.expires - facts.created).days <= 366
    assert "BEGIN PGP PUBLIC KEY BLOCK" in inspected.public_key


async def test_a_binary_private_key_with_its_passphrase_reads_as_private(keys: Keys) -> None:
    binary = keys.gpg.run("--export-secret-keys", keys.ours.fingerprint, passphrase=keys.ours.passphrase)
    inspected = await inspect_key(binary, "our passphrase")
    assert inspected.facts.has_secret is True
    assert inspected.facts.fingerprint == keys.ours.fingerprint
    assert inspected.facts.expires is None
    assert "PRIVATE" not in inspected.public_key  # the public part only


async def test_a_private_key_is_refused_with_a_wrong_or_missing_passphrase(keys: Keys) -> None:
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as wrong:
        await inspect_key(keys.ours.secret, "not it")
    with pytest.raises(WrongPassphrase, match="none was given") as missing:
        await inspect_key(keys.ours.secret)
    for refused in (wrong.value, missing.value):
        assert refused.field == "passphrase"
        assert "not it" not in refused.message and "our passphrase" not in refused.message


async def test_an_unprotected_private_key_needs_no_passphrase(keys: Keys) -> None:
    assert (await inspect_key(keys.bare.secret)).facts.has_secret is True


async def test_expired_and_revoked_keys_are_refused_naming_them(keys: Keys) -> None:
    with pytest.raises(
        KeyExpired, match=rf"{keys.expired.fingerprint} has expired since 2020-01-02"
    ) as expired:
        await inspect_key(keys.expired.public)
    with pytest.raises(KeyRevoked, match=rf"{keys.revoked.fingerprint} is revoked") as revoked:
        await inspect_key(keys.revoked.secret)
    assert expired.value.field == revoked.value.field == "key"


@pytest.mark.parametrize(
    "material",
    [
        b"",
        b"hello",
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n-----END PGP PUBLIC KEY BLOCK-----\n",
    ],
)
async def test_what_is_not_a_key_is_refused(material: bytes) -> None:
    with pytest.raises(KeyUnreadable, match="not an OpenPGP key") as refused:
        await inspect_key(material)
    assert refused.value.field == "key"


async def test_two_keys_in_one_block_are_refused(keys: Keys) -> None:
    both = keys.gpg.run("--armor", "--export", keys.ours.fingerprint, keys.bare.fingerprint)
    with pytest.raises(KeyUnreadable, match="holds 2 keys"):
        await inspect_key(both)
