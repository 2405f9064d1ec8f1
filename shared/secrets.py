"""Encryption at rest of connection secrets (Fernet, key derived from `CONNECT_SECRET_KEY`)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from shared.errors import PermanentError
from shared.settings import CommonSettings


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise PermanentError("CONNECT_SECRET_KEY must be at least 16 characters long")
        digest = hashlib.sha256(secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise PermanentError("stored secret cannot be decrypted with the configured key") from exc


def load_secret_key(value: str | None) -> str | None:
    """The key itself, or the contents of the file it names (`file:/run/secrets/connect-key`)."""
    if value and value.startswith("file:"):
        return Path(value.removeprefix("file:")).read_text().strip()
    return value


def secret_box(settings: CommonSettings) -> SecretBox:
    """The service's SecretBox; a service that handles secrets refuses to start without a key."""
    key = load_secret_key(settings.secret_key)
    if key is None:
        raise SystemExit("CONNECT_SECRET_KEY is not set: connection secrets cannot be encrypted or read")
    return SecretBox(key)
