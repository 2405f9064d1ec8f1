"""Encryption at rest of stored secrets (connections, notification channels, PGP keys).

Format `v2:<key id>:<base64url(nonce | AES-256-GCM ciphertext)>`, the associated data naming the record and field
the secret belongs to (`Binding`), so a ciphertext copied onto another record does not decrypt. Several keys may be
configured (rotation): the newest encrypts, all decrypt, the key id says which one. Ciphertexts of the first format
(Fernet, key = SHA-256 of the configured string) still decrypt; `connect admin rotate-secrets` upgrades them.

A key is normally 32 random bytes in base64 (`connect admin generate-key`); anything else is a passphrase, stretched
with scrypt and the deployment's `CONNECT_SECRET_SALT` (every service must derive the same key, so the salt is a
setting rather than random per ciphertext). Weak keys are refused when the service starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import PermanentError
from shared.settings import CommonSettings

VERSION = "v2"
KEY_BYTES = 32
MIN_PASSPHRASE = 16
MIN_SALT = 16
URLSAFE = re.compile(r"[A-Za-z0-9_-]{43}=?")
# scrypt cost: n=2**15, r=8 takes ~32 MiB and ~0.1 s, once per service start.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# Passphrases that are placeholders or test keys, not secrets.
WEAK_WORDS = (
    "test",
    "example",
    "changeme",
    "change-me",
    "not-for-production",
    "password",
    "default",
    "dummy",
)


class WeakKey(ValueError):
    """A configured key is refused: the message says why and how to make a proper one."""


@dataclass(frozen=True)
class Binding:
    """Which record field a secret belongs to: the ciphertext's associated data."""

    kind: str  # "connection", "notification_channel", "pgp_key"
    record_id: int
    field: str  # e.g. "password_encrypted"

    @property
    def associated_data(self) -> bytes:
        return f"connect/{self.kind}/{self.record_id}/{self.field}".encode()

    def __str__(self) -> str:
        return f"{self.kind} {self.record_id} ({self.field})"


def generate_key() -> str:
    """A new key in its normal form: 32 random bytes, base64."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def _raw_key(value: str) -> bytes | None:
    """The 32 bytes of a base64 key, or None when the value is a passphrase."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        # `secrets.token_urlsafe(32)`, as the deployment docs once suggested: URL-safe, unpadded
        if not URLSAFE.fullmatch(value):
            return None
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return raw if len(raw) == KEY_BYTES else None


def derive_key(value: str, salt: str | None) -> bytes:
    """The AES key of a configured value; raises `WeakKey` for a key not fit to protect secrets."""
    raw = _raw_key(value)
    if raw is not None:
        if len(set(raw)) < 8:  # all-zero, one repeated byte, or nearly so: not random
            raise WeakKey(
                "the key is not random (too few distinct bytes); make one with `connect admin generate-key`"
            )
        return raw
    if len(value) < MIN_PASSPHRASE:
        raise WeakKey(
            f"a passphrase must be at least {MIN_PASSPHRASE} characters; better, a 32-byte key from "
            "`connect admin generate-key`"
        )
    lowered = value.lower()
    if any(word in lowered for word in WEAK_WORDS) or len(set(value)) < 6:
        raise WeakKey(
            "the passphrase is a placeholder or test key; make a key with `connect admin generate-key`"
        )
    if salt is None or len(salt) < MIN_SALT:
        raise WeakKey(
            f"a passphrase needs CONNECT_SECRET_SALT (at least {MIN_SALT} characters, the same in every service) "
            "to derive the key; or use a 32-byte key from `connect admin generate-key`"
        )
    return hashlib.scrypt(
        value.encode(),
        salt=salt.encode(),
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )


def key_id(key: bytes) -> str:
    """A short public name of a key, written into each ciphertext (reveals nothing of the key)."""
    return hashlib.sha256(b"connect-key-id:" + key).hexdigest()[:12]


class SecretBox:
    """`SecretBox(newest, old_keys=[...], salt=...)`: the newest key encrypts, every configured key decrypts."""

    def __init__(self, secret_key: str, *, old_keys: Sequence[str] = (), salt: str | None = None) -> None:
        values = [secret_key, *old_keys]
        self._keys: dict[str, AESGCM] = {}
        ids: list[str] = []
        for position, value in enumerate(values):
            try:
                key = derive_key(value, salt)
            except WeakKey as exc:
                name = "CONNECT_SECRET_KEY" if position == 0 else f"CONNECT_OLD_SECRET_KEYS[{position - 1}]"
                raise WeakKey(f"{name} refused: {exc}") from None
            ids.append(key_id(key))
            self._keys.setdefault(ids[-1], AESGCM(key))
        self.current_id = ids[0]
        # The first format's key: SHA-256 of the configured string.
        self._legacy = [
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest())) for value in values
        ]

    def encrypt(self, plaintext: str, binding: Binding) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self.current_id].encrypt(nonce, plaintext.encode(), binding.associated_data)
        return f"{VERSION}:{self.current_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, binding: Binding) -> str:
        if not token.startswith(VERSION + ":"):
            return self._decrypt_legacy(token)
        try:
            _, kid, body = token.split(":", 2)
            blob = base64.urlsafe_b64decode(body)
        except (ValueError, binascii.Error):
            raise PermanentError(f"stored secret of {binding} is not a valid ciphertext") from None
        aead = self._keys.get(kid)
        if aead is None:
            raise PermanentError(
                f"stored secret of {binding} was encrypted with key {kid}, which is not configured "
                "(add it to CONNECT_OLD_SECRET_KEYS)"
            )
        try:
            return aead.decrypt(blob[:12], blob[12:], binding.associated_data).decode()
        except InvalidTag:
            raise PermanentError(
                f"stored secret does not belong to {binding}: copied from another record or altered"
            ) from None

    def is_current(self, token: str) -> bool:
        """Whether a ciphertext is in the current format under the newest key (rotation skips it)."""
        return token.startswith(f"{VERSION}:{self.current_id}:")

    def _decrypt_legacy(self, token: str) -> str:
        for fernet in self._legacy:
            try:
                return fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                continue
        raise PermanentError("stored secret cannot be decrypted with the configured keys")


class Record(Protocol):
    @property
    def id(self) -> int: ...


def open_field(box: SecretBox, kind: str, record: Record, field: str) -> str | None:
    """The plaintext of a record's encrypted field (`password_encrypted`, ...), None when it holds none."""
    token: str | None = getattr(record, field)
    return None if token is None else box.decrypt(token, Binding(kind, record.id, field))


def load_secret_key(value: str | None) -> str | None:
    """The key itself, or the contents of the file it names (`file:/run/secrets/connect-key`)."""
    if value and value.startswith("file:"):
        return Path(value.removeprefix("file:")).read_text().strip()
    return value


def optional_secret_box(settings: CommonSettings) -> SecretBox | None:
    """The configured SecretBox, None without a key; a weak key stops the service with a clear message."""
    key = load_secret_key(settings.secret_key)
    if key is None:
        return None
    old = [
        k for k in (load_secret_key(v.strip()) for v in settings.old_secret_keys.split(",") if v.strip()) if k
    ]
    try:
        return SecretBox(key, old_keys=old, salt=load_secret_key(settings.secret_salt))
    except WeakKey as exc:
        raise SystemExit(str(exc)) from None


def secret_box(settings: CommonSettings) -> SecretBox:
    """The service's SecretBox; a service that handles secrets refuses to start without a key."""
    box = optional_secret_box(settings)
    if box is None:
        raise SystemExit("CONNECT_SECRET_KEY is not set: connection secrets cannot be encrypted or read")
    return box
