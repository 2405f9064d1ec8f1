"""Decrypting and encrypting while streaming (shared.pgp), against Debian's gpg as the independent tool:
gpg encrypts and Connect decrypts, Connect encrypts and gpg decrypts; each failure its own error."""

from __future__ import annotations

import hashlib
import os
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.pgp import (
    KeyExpired,
    KeyNotSecret,
    KeyRevoked,
    MessageCorrupt,
    NotEncryptedToKey,
    SignatureMissing,
    WrongPassphrase,
    WrongSigner,
    decrypt_stream,
    encrypt_stream,
)
from tests.support.gpg import Gpg, GpgKey

CSV = b"email,first_name\n" + b"".join(b"user%d@example.com,Name %d\n" % (i, i) for i in range(5000))


@dataclass(frozen=True)
class Keys:
    gpg: Gpg
    ours: GpgKey  # Connect's private key, protected by a passphrase
    partner: GpgKey  # signs what it sends, receives what Connect exports
    stranger: GpgKey
    expired: GpgKey
    revoked: GpgKey


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    with Gpg(tmp_path_factory.mktemp("gpg-streams")) as gpg:
        yield Keys(
            gpg,
            ours=gpg.generate("Connect <connect@example.com>", "our passphrase"),
            partner=gpg.generate("Partner <feeds@partner.example>"),
            stranger=gpg.generate("Stranger <someone@elsewhere.example>"),
            expired=gpg.generate("Old <old@partner.example>", expire="1d", created="20200101T000000"),
            revoked=gpg.revoke(gpg.generate("Gone <gone@partner.example>")),
        )


async def chunked(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def decrypt(keys: Keys, message: bytes, **options: object) -> bytes:
    passphrase = options.pop("passphrase", keys.ours.passphrase)
    key = options.pop("key", keys.ours.secret)
    return await collect(decrypt_stream(chunked(message), key, passphrase, **options))  # type: ignore[arg-type]


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armoured"])
async def test_a_file_gpg_encrypted_to_our_key_decrypts(keys: Keys, armor: bool) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint], armor=armor)
    assert message.startswith(b"-----BEGIN PGP MESSAGE") is armor
    assert await decrypt(keys, message) == CSV


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armoured"])
async def test_a_signed_file_decrypts_when_verified_against_its_signer(keys: Keys, armor: bool) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint], sign_with=keys.partner, armor=armor)
    others = [keys.stranger.public, keys.partner.public]  # any one of the keys given may have signed it
    assert await decrypt(keys, message, verify_with=others) == CSV


async def test_a_signature_by_another_key_fails_as_wrong_signer(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint], sign_with=keys.stranger)
    with pytest.raises(WrongSigner, match=keys.partner.fingerprint) as refused:
        await decrypt(keys, message, verify_with=[keys.partner.public])
    assert refused.value.field == "verify_with"


async def test_an_unsigned_file_fails_when_a_signature_is_required(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint])
    with pytest.raises(SignatureMissing, match="not signed"):
        await decrypt(keys, message, verify_with=[keys.partner.public])
    assert await decrypt(keys, message) == CSV  # without verify_with, no signature is needed


async def test_the_verdict_comes_after_the_plaintext_and_before_the_stream_ends(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint])
    stream = decrypt_stream(chunked(message), keys.ours.secret, keys.ours.passphrase, [keys.partner.public])
    received = b""
    with pytest.raises(SignatureMissing):
        async for chunk in stream:
            received += chunk
    assert received == CSV  # a caller that keeps nothing of a failed stream loses nothing it should keep


async def test_a_wrong_or_missing_passphrase_fails_as_such(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint])
    with pytest.raises(WrongPassphrase, match="wrong passphrase") as wrong:
        await decrypt(keys, message, passphrase="guess")
    with pytest.raises(WrongPassphrase, match="none was given"):
        await decrypt(keys, message, passphrase=None)
    assert wrong.value.field == "passphrase" and "guess" not in str(wrong.value)


@pytest.mark.parametrize("where", [0.5, 0.98], ids=["middle", "near-the-end"])
async def test_tampered_ciphertext_fails_as_corrupt(keys: Keys, where: float) -> None:
    message = bytearray(keys.gpg.encrypt(CSV, [keys.ours.fingerprint]))
    message[int(len(message) * where)] ^= 0x01
    with pytest.raises(MessageCorrupt):
        await decrypt(keys, bytes(message))


async def test_a_truncated_file_and_a_plain_file_fail_as_corrupt(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint])
    with pytest.raises(MessageCorrupt):
        await decrypt(keys, message[: len(message) // 2])
    with pytest.raises(MessageCorrupt, match="not an OpenPGP message"):
        await decrypt(keys, CSV)


async def test_a_file_for_another_key_fails_naming_the_keys(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.stranger.fingerprint])
    with pytest.raises(NotEncryptedToKey, match=keys.ours.fingerprint) as refused:
        await decrypt(keys, message)
    assert refused.value.field == "decrypt_with"


async def test_a_signed_but_not_encrypted_file_is_refused(keys: Keys) -> None:
    with pytest.raises(NotEncryptedToKey, match="not encrypted"):
        await decrypt(keys, keys.gpg.sign(CSV, keys.partner), verify_with=[keys.partner.public])


async def test_a_public_key_cannot_decrypt(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint])
    with pytest.raises(KeyNotSecret, match="public key") as refused:
        await decrypt(keys, message, key=keys.ours.public)
    assert refused.value.field == "decrypt_with"


async def test_expired_and_revoked_keys_fail_before_any_data(keys: Keys) -> None:
    message = keys.gpg.encrypt(CSV, [keys.ours.fingerprint])
    with pytest.raises(KeyExpired) as expired:
        await decrypt(keys, message, verify_with=[keys.partner.public, keys.expired.public])
    assert expired.value.field == "verify_with[1]"
    with pytest.raises(KeyRevoked) as revoked:
        await collect(encrypt_stream(chunked(CSV), [keys.partner.public, keys.revoked.public]))
    assert revoked.value.field == "encrypt_to[1]"
    with pytest.raises(KeyExpired):
        await decrypt(keys, message, key=keys.expired.secret, passphrase=None)


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armoured"])
async def test_what_we_encrypt_and_sign_gpg_decrypts_and_verifies(keys: Keys, armor: bool) -> None:
    stream = encrypt_stream(
        chunked(CSV),
        [keys.partner.public, keys.stranger.public],
        keys.ours.secret,
        "our passphrase",
        armor=armor,
    )
    message = await collect(stream)
    assert message.startswith(b"-----BEGIN PGP MESSAGE") is armor
    for recipient in (keys.partner, keys.stranger):
        plaintext, status = keys.gpg.decrypt(message, recipient)
        assert plaintext == CSV
        assert f"VALIDSIG {keys.ours.fingerprint}" in status  # signed with our signing subkey …
        assert status.split("VALIDSIG ")[1].split()[9] == keys.ours.fingerprint  # … of our key


async def test_encrypting_unsigned_and_with_a_wrong_signing_passphrase(keys: Keys) -> None:
    message = await collect(encrypt_stream(chunked(CSV), [keys.partner.public]))
    plaintext, status = keys.gpg.decrypt(message, keys.partner)
    assert plaintext == CSV and "SIG" not in status
    with pytest.raises(WrongPassphrase) as wrong:
        await collect(encrypt_stream(chunked(CSV), [keys.partner.public], keys.ours.secret, "guess"))
    assert wrong.value.field == "sign_passphrase"


async def test_an_error_of_the_source_stops_gpg_and_is_raised(keys: Keys) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield CSV[:1000]
        raise ConnectionResetError("the SFTP server went away")

    with pytest.raises(ConnectionResetError, match="went away"):
        await collect(encrypt_stream(failing(), [keys.partner.public]))


async def test_decrypting_50_mb_keeps_python_memory_far_below_the_file_size(
    keys: Keys, tmp_path: Path
) -> None:
    plain, encrypted = tmp_path / "big.csv", tmp_path / "big.csv.gpg"
    with plain.open("wb") as handle:
        for _ in range(50):
            handle.write(os.urandom(1 << 20))  # incompressible: the ciphertext is as large as the file
    keys.gpg.encrypt_file(plain, encrypted, [keys.ours.fingerprint], sign_with=keys.partner)

    async def read(path: Path) -> AsyncIterator[bytes]:
        with path.open("rb") as handle:
            while chunk := handle.read(256 * 1024):
                yield chunk

    digest, size = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        stream = decrypt_stream(
            read(encrypted), keys.ours.secret, keys.ours.passphrase, [keys.partner.public]
        )
        async for chunk in stream:
            digest.update(chunk)
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == plain.stat().st_size
    assert digest.hexdigest() == hashlib.sha256(plain.read_bytes()).hexdigest()
    assert peak < 8 * 1024 * 1024, f"peak Python allocation {peak} bytes while streaming 50 MB"


def gpg_agents_under(directory: Path) -> list[int]:
    """gpg-agents whose home is under `directory` (from their command lines)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if proc.name.isdigit() and "gpg-agent" in command and str(directory) in command:
            found.append(int(proc.name))
    return found


async def test_a_stream_left_early_stops_gpg_and_leaves_no_home_nor_agent(
    keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where GpgHome makes its homes
    message = keys.gpg.encrypt(CSV * 20, [keys.ours.fingerprint])
    stream = decrypt_stream(chunked(message, 4096), keys.ours.secret, keys.ours.passphrase)
    first = await anext(stream)
    assert first and [path.name[:12] for path in tmp_path.iterdir()] == ["connect-pgp-"]
    await stream.aclose()  # as `async with aclosing(...)` or a failed consumer does
    assert list(tmp_path.iterdir()) == []
    assert gpg_agents_under(tmp_path) == []
    with pytest.raises(MessageCorrupt):
        await decrypt(keys, message[:-10])  # and after a failure too
    assert list(tmp_path.iterdir()) == [] and gpg_agents_under(tmp_path) == []
