"""shared.secrets: key forms, weak keys, rotation, binding to the record, the first (Fernet) format."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.fernet import Fernet

from shared.errors import PermanentError
from shared.secrets import Binding, SecretBox, WeakKey, derive_key, generate_key, optional_secret_box
from shared.settings import CommonSettings

KEY = generate_key()
SALT = "deployment-salt-4f9a1c"
PASSPHRASE = "correct horse battery staple"
HERE = Binding("connection", 7, "password_encrypted")


def test_a_generated_key_is_32_random_bytes_used_as_is() -> None:
    assert len(base64.b64decode(KEY)) == 32
    assert derive_key(KEY, None) == base64.b64decode(KEY)
    assert generate_key() != KEY


def test_a_passphrase_goes_through_scrypt_with_the_deployment_salt() -> None:
    derived = derive_key(PASSPHRASE, SALT)
    assert derived == hashlib.scrypt(
        PASSPHRASE.encode(), salt=SALT.encode(), n=2**15, r=8, p=1, maxmem=2**26, dklen=32
    )
    assert derive_key(PASSPHRASE, SALT) == derived  # every service derives the same key
    assert derive_key(PASSPHRASE, SALT + "x") != derived
    token = SecretBox(PASSPHRASE, salt=SALT).encrypt("pw", HERE)
    assert SecretBox(PASSPHRASE, salt=SALT).decrypt(token, HERE) == "pw"


@pytest.mark.parametrize(
    ("value", "salt", "why"),
    [
        ("short-phrase-15", SALT, "at least 16"),
        (base64.b64encode(bytes(32)).decode(), None, "not random"),
        ("test-secret-key-not-for-production", SALT, "placeholder or test key"),
        ("changeme-changeme-changeme", SALT, "placeholder or test key"),
        ("abababababababababab", SALT, "placeholder or test key"),
        (PASSPHRASE, None, "CONNECT_SECRET_SALT"),
        (PASSPHRASE, "short", "CONNECT_SECRET_SALT"),
    ],
)
def test_weak_keys_are_refused_saying_why(value: str, salt: str | None, why: str) -> None:
    with pytest.raises(WeakKey, match=why):
        SecretBox(value, salt=salt)


def test_a_service_with_a_weak_key_stops_with_a_clear_message() -> None:
    settings = CommonSettings.model_validate({"CONNECT_SECRET_KEY": "too-short"})
    with pytest.raises(SystemExit, match="CONNECT_SECRET_KEY refused: a passphrase must be at least 16"):
        optional_secret_box(settings)


def test_round_trip_and_a_fresh_nonce_each_time() -> None:
    box = SecretBox(KEY)
    token = box.encrypt("s3cret pässword", HERE)
    assert "s3cret" not in token and token.startswith("v2:")
    assert box.decrypt(token, HERE) == "s3cret pässword"
    assert SecretBox(KEY).decrypt(token, HERE) == "s3cret pässword"  # the key alone is enough
    assert box.encrypt("same", HERE) != box.encrypt("same", HERE)


@pytest.mark.parametrize(
    "elsewhere",
    [Binding("connection", 8, "password_encrypted"), Binding("connection", 7, "token_encrypted"),
     Binding("notification_channel", 7, "password_encrypted")],
)  # fmt: skip
def test_a_ciphertext_copied_onto_another_record_or_field_does_not_decrypt(elsewhere: Binding) -> None:
    token = SecretBox(KEY).encrypt("pw", HERE)
    with pytest.raises(PermanentError, match=f"does not belong to {elsewhere.kind} {elsewhere.record_id}"):
        SecretBox(KEY).decrypt(token, elsewhere)


def test_rotation_newest_encrypts_all_decrypt() -> None:
    old, new = generate_key(), generate_key()
    before = SecretBox(old).encrypt("pw", HERE)
    rotated = SecretBox(new, old_keys=[old])
    assert rotated.decrypt(before, HERE) == "pw"
    after = rotated.encrypt("pw", HERE)
    assert rotated.is_current(after) and not rotated.is_current(before)
    assert SecretBox(new).decrypt(after, HERE) == "pw"  # the old key is no longer needed for it
    with pytest.raises(PermanentError, match="not configured"):
        SecretBox(new).decrypt(before, HERE)


def test_the_first_format_still_decrypts_and_is_not_current() -> None:
    legacy = "a-passphrase-of-old-2024"  # the first format: Fernet, key = SHA-256 of the configured string
    token = Fernet(base64.urlsafe_b64encode(hashlib.sha256(legacy.encode()).digest())).encrypt(b"pw").decode()
    box = SecretBox(KEY, old_keys=[legacy], salt=SALT)
    assert box.decrypt(token, HERE) == "pw"
    assert not box.is_current(token)
    with pytest.raises(PermanentError, match="cannot be decrypted"):
        SecretBox(KEY).decrypt(token, HERE)


def test_garbage_is_refused() -> None:
    with pytest.raises(PermanentError):
        SecretBox(KEY).decrypt("not a token", HERE)
    with pytest.raises(PermanentError):
        SecretBox(KEY).decrypt("v2:abc:!!!", HERE)


def test_a_token_urlsafe_key_counts_as_a_32_byte_key() -> None:
    raw = bytes(range(32))
    value = base64.urlsafe_b64encode(raw).decode().rstrip("=")  # what `secrets.token_urlsafe(32)` looks like
    assert derive_key(value, None) == raw
