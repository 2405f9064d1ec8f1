"""PGP in import and export runs over real sshd and the real database (issue #17): files encrypted and signed
by Debian's gpg (the partner's independent tool) are decrypted and verified before a row is read; a bad
signature, tampered ciphertext or an unusable key fails the run and changes nothing; an export encrypted
(and signed) by Connect is decrypted and verified by gpg and equals the plain export."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.contracts.runs import RunStatus
from tests.support.executor_harness import (
    CONTACT_FIELDS,
    CONTACT_MAPPING,
    Harness,
    audience_contents,
    csv_text,
    import_spec,
    run_request,
)
from tests.support.gpg import Gpg, GpgKey

OURS, PARTNER, STRANGER, EXPIRED = 1, 2, 3, 4  # key ids in the catalog
ROWS = [["id", "email", "points"], *[[f"C{i}", f"c{i}@x.io", str(i)] for i in range(1, 1501)]]
LOADED = [{"customer_id": f"C{i}", "email": f"c{i}@x.io", "points": i} for i in range(1, 1501)]


@dataclass(frozen=True)
class Keys:
    partner_gpg: Gpg  # the partner's own gpg: its key and Connect's public key
    ours: GpgKey
    partner: GpgKey
    stranger: GpgKey
    expired: GpgKey


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    with Gpg(tmp_path_factory.mktemp("gpg-partner")) as gpg:
        yield Keys(
            gpg,
            ours=gpg.generate("Connect <connect@example.com>", "our secret words"),
            partner=gpg.generate("Partner <feeds@partner.example>", "partner words"),
            stranger=gpg.generate("Stranger <x@elsewhere.example>", "stranger words"),
            expired=gpg.generate(
                "Old <old@example.com>", "old words", expire="1d", created="20200101T000000"
            ),
        )


async def stored_keys(h: Harness, keys: Keys, *, our_passphrase: str | None = None) -> None:
    ours = keys.ours
    await h.pgp_key(OURS, ours.public, secret=ours.secret, passphrase=our_passphrase or ours.passphrase)
    await h.pgp_key(PARTNER, keys.partner.public)
    await h.pgp_key(STRANGER, keys.stranger.public)
    expired = keys.expired
    await h.pgp_key(EXPIRED, expired.public, secret=expired.secret, passphrase=expired.passphrase)


def encrypted_spec(path: str, **pgp: Any) -> dict[str, Any]:
    target = {"kind": "custom", "table": "contacts", "mode": "merge"}
    return import_spec(path, target, CONTACT_MAPPING, source={"pgp": {"decrypt_with": OURS, **pgp}})


@pytest.fixture
async def h(harness: Harness, keys: Keys) -> Harness:
    await harness.connection()
    await harness.table("contacts", CONTACT_FIELDS, primary_key=("customer_id",))
    await stored_keys(harness, keys)
    return harness


async def test_signed_partner_files_binary_and_armoured_are_decrypted_verified_and_loaded(
    h: Harness, keys: Keys, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    service = h.service(spool_dir=str(spool))
    gpg, data = keys.partner_gpg, csv_text(ROWS).encode()
    # Binary, gzipped inside: the compression is found under the .gpg suffix.
    h.write(
        "in/c.csv.gz.gpg", gpg.encrypt(gzip.compress(data), [keys.ours.fingerprint], sign_with=keys.partner)
    )
    run = await h.run(encrypted_spec("in/c.csv.gz.gpg", verify_with=[STRANGER, PARTNER]), service=service)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert run.data.counts.inserted == 1500
    assert await h.rows("contacts", "points") == LOADED
    assert any("decrypted c.csv.gz.gpg and its signature verified" in line
               for line in h.events.logs(run.data.run_id))  # fmt: skip
    # ASCII-armoured, changed rows: merged over the first load.
    changed = [ROWS[0], ["C1", "new@x.io", "9999"]]
    h.write("in/d.csv.asc", gpg.encrypt(csv_text(changed).encode(), [keys.ours.fingerprint],
                                        sign_with=keys.partner, armor=True))  # fmt: skip
    run = await h.run(encrypted_spec("in/d.csv.asc", verify_with=[PARTNER]), service=service)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert (await h.rows("contacts", "points"))[-1] == {
        "customer_id": "C1",
        "email": "new@x.io",
        "points": 9999,
    }
    # Without verify_with, an unsigned file is read too.
    h.write("in/e.csv.pgp", gpg.encrypt(csv_text([ROWS[0], ["C9999", "z@x.io", "1"]]).encode(),
                                        [keys.ours.fingerprint]))  # fmt: skip
    run = await h.run(encrypted_spec("in/e.csv.pgp"), service=service)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert run.data.counts.inserted == 1
    # A zip inside: its member is read by range from the spool, as from SFTP.
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("f.csv", csv_text([ROWS[0], ["C8888", "zip@x.io", "8"]]))
    h.write("in/f.csv.zip.gpg", gpg.encrypt(zipped.getvalue(), [keys.ours.fingerprint]))
    run = await h.run(encrypted_spec("in/f.csv.zip.gpg"), service=service)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert run.data.counts.inserted == 1
    assert list(spool.iterdir()) == []  # every run's spool removed


def _flip(message: bytes, at: int) -> bytes:
    return message[:at] + bytes([message[at] ^ 0x01]) + message[at + 1 :]


async def test_bad_signatures_tampering_and_bad_keys_fail_the_run_and_change_nothing(
    h: Harness, keys: Keys, tmp_path: Path
) -> None:
    gpg, ours = keys.partner_gpg, keys.ours.fingerprint
    h.write("first.csv", csv_text(ROWS[:11]))
    plain = import_spec(
        "first.csv", {"kind": "custom", "table": "contacts", "mode": "merge"}, CONTACT_MAPPING
    )
    assert (await h.run(plain)).data.status == RunStatus.SUCCEEDED
    before = await audience_contents(h)
    spool = tmp_path / "spool"
    spool.mkdir()
    service = h.service(spool_dir=str(spool))
    data = csv_text([ROWS[0], *[[f"C{i}", f"changed{i}@x.io", "0"] for i in range(1, 3001)]]).encode()
    # No compression inside, so gpg hands out plaintext long before it reaches the integrity check.
    unsigned = gpg.run("--compress-algo", "none", "--recipient", ours, "--encrypt", data=data)
    signed_by_stranger = gpg.encrypt(data, [ours], sign_with=keys.stranger)
    signed = gpg.encrypt(data, [ours], sign_with=keys.partner)
    cases = [
        ("unsigned.csv.pgp", unsigned, {"verify_with": [PARTNER]}, "not signed"),
        ("stranger.csv.pgp", signed_by_stranger, {"verify_with": [PARTNER]}, "not by any of"),
        ("tampered.csv.pgp", _flip(unsigned, len(unsigned) - 30), {}, "changed or damaged"),
        ("other.csv.pgp", gpg.encrypt(data, [keys.partner.fingerprint]), {}, "encrypted to"),
        ("expired.csv.pgp", signed, {"decrypt_with": EXPIRED}, "has expired"),
        ("plain.csv.pgp", data, {}, "not an OpenPGP message"),
    ]
    for name, content, pgp, says in cases:
        h.write(name, content)
        run = await h.run(encrypted_spec(name, **pgp), service=service)
        assert run.data.status == RunStatus.FAILED, name
        assert run.data.error and says in run.data.error, (name, run.data.error)
        assert "PRIVATE KEY" not in run.data.error and keys.ours.passphrase not in run.data.error
        assert await audience_contents(h) == before, name
        assert list(spool.iterdir()) == [], name
    # The key's passphrase stored wrong (a rotated key, say): fails clearly before any data.
    await h.mongo[h.settings.database("catalog")]["pgp_keys"].delete_one({"_id": OURS})
    await h.pgp_key(OURS, keys.ours.public, secret=keys.ours.secret, passphrase="not the words")
    run = await h.run(encrypted_spec("stranger.csv.pgp"), service=service)
    assert run.data.status == RunStatus.FAILED
    assert run.data.error and "wrong passphrase" in run.data.error, run.data.error
    assert await audience_contents(h) == before


async def test_a_dry_run_decrypts_and_writes_nothing(h: Harness, keys: Keys) -> None:
    from shared.contracts.runs import Trigger

    gpg = keys.partner_gpg
    h.write(
        "dry.csv.pgp",
        gpg.encrypt(csv_text(ROWS[:4]).encode(), [keys.ours.fingerprint], sign_with=keys.partner),
    )
    before = await audience_contents(h)
    request = run_request(encrypted_spec("dry.csv.pgp", verify_with=[PARTNER]))
    request = request.model_copy(
        update={"data": request.data.model_copy(update={"trigger": Trigger.DRY_RUN})}
    )
    await h.service().accept(request)
    run = await h.finished(request.data.run_id)
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    assert run.data.counts.read == 3
    assert any("decrypted dry.csv.pgp" in line for line in h.events.logs(run.data.run_id))
    assert await audience_contents(h) == before


def export_spec(path: str, **pgp: Any) -> dict[str, Any]:
    destination: dict[str, Any] = {"kind": "sftp", "connection_id": 1, "path_template": path}
    if pgp:
        destination["pgp"] = pgp
    return {"kind": "export", "source": {"kind": "table", "table": "contacts"},
            "fields": ["customer_id", "email", "points"], "destination": destination}  # fmt: skip


async def test_an_export_encrypted_and_signed_is_what_gpg_decrypts_and_verifies(
    h: Harness, keys: Keys
) -> None:
    h.write("load.csv", csv_text(ROWS[:201]))
    plain = import_spec("load.csv", {"kind": "custom", "table": "contacts", "mode": "merge"}, CONTACT_MAPPING)
    assert (await h.run(plain)).data.status == RunStatus.SUCCEEDED
    assert (await h.run(export_spec("out/plain.csv"))).data.status == RunStatus.SUCCEEDED
    expected = (h.root / "out/plain.csv").read_bytes()
    assert expected.count(b"\n") == 201
    run = await h.run(export_spec("out/enc.csv", encrypt_to=[PARTNER], sign_with=OURS))
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    uploaded = (h.root / "out/enc.csv.pgp").read_bytes()
    assert expected not in uploaded
    content, status = keys.partner_gpg.decrypt(uploaded, keys.partner)
    assert content == expected
    assert f"VALIDSIG {keys.ours.fingerprint}" in status
    run = await h.run(export_spec("out/arm.csv.asc", encrypt_to=[PARTNER, STRANGER], armor=True))
    assert run.data.status == RunStatus.SUCCEEDED, run.data.error
    armoured = (h.root / "out/arm.csv.asc").read_bytes()
    assert armoured.startswith(b"-----BEGIN PGP MESSAGE-----")
    assert keys.partner_gpg.decrypt(armoured, keys.stranger)[0] == expected
    # An unusable key fails the run before the upload: no file, not even a partial one.
    for pgp, says in (({"encrypt_to": [EXPIRED]}, "has expired"), ({"encrypt_to": [PARTNER], "sign_with": PARTNER},
                                                                   "is a public key")):  # fmt: skip
        run = await h.run(export_spec("out/bad.csv", **pgp))
        assert run.data.status == RunStatus.FAILED
        assert run.data.error and says in run.data.error, run.data.error
    assert sorted(p.name for p in (h.root / "out").iterdir()) == ["arm.csv.asc", "enc.csv.pgp", "plain.csv"]
