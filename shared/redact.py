"""Connection secrets scrubbed from text that came back from a remote system (DESIGN §7).

A REST endpoint may echo the `Authorization` header in its error body, an SFTP server may quote what it
was sent: such text is scrubbed before it is logged, stored, published or returned. A `Redactor` knows
a set of secrets and replaces every occurrence of each one, in the forms a remote system is likely to
echo (as sent, base64, URL-encoded, JSON-escaped; a private key's PEM body lines), by `***`.

The executor binds one redactor per run (`bind`); adapters add the secrets they decrypt (`remember`),
so the run's reporter and the JSON log formatter scrub with everything the run has used.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from contextvars import ContextVar
from urllib.parse import quote, quote_plus

from shared.catalog_records import ConnectionRecord
from shared.secrets import SecretBox, open_field

MASK = "***"
# Shorter strings occur in ordinary text by chance; masking them would garble every message.
MIN_SECRET_LENGTH = 4
PEM_LINE = re.compile(r"^[A-Za-z0-9+/=]{16,}$")


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def add(self, *secrets: str | None) -> None:
        for secret in secrets:
            if secret and len(secret.strip()) >= MIN_SECRET_LENGTH:
                self._forms |= {form for form in encoded_forms(secret) if len(form) >= MIN_SECRET_LENGTH}
                self._pattern = None

    def add_basic_auth(self, username: str, password: str | None) -> None:
        """`user:password` as an HTTP Basic or SSH client would encode it."""
        if password and len(password) >= MIN_SECRET_LENGTH:
            self.add(password)
            self._forms |= _base64_forms(f"{username}:{password}")
            self._pattern = None

    def merge(self, other: Redactor) -> None:
        self._forms |= other._forms
        self._pattern = None

    def scrub(self, text: str) -> str:
        if not self._forms or not text:
            return text
        if self._pattern is None:  # longest first: a form inside a longer one is masked with it
            ordered = sorted(self._forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))
        return self._pattern.sub(MASK, text)


def encoded_forms(secret: str) -> set[str]:
    """The secret and the encodings a remote system might echo it in."""
    forms = {secret, secret.strip(), quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms |= {quote(secret, safe="").lower(), quote_plus(secret).lower()}  # %2f as well as %2F
    forms |= _base64_forms(secret)
    if "-----BEGIN" in secret:  # a PEM key: each body line, and the body as one line
        body = [line.strip() for line in secret.splitlines() if PEM_LINE.match(line.strip())]
        forms |= set(body)
        if body:
            forms.add("".join(body))
    return forms


def _base64_forms(text: str) -> set[str]:
    raw = text.encode()
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    return {standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")}


def connection_redactor(connection: ConnectionRecord, box: SecretBox) -> Redactor:
    """A redactor that knows every secret of the connection (decrypted with `box`)."""
    redactor = Redactor()
    for field in ("private_key_encrypted", "token_encrypted"):
        if (secret := open_field(box, "connection", connection, field)) is not None:
            redactor.add(secret)
    if (password := open_field(box, "connection", connection, "password_encrypted")) is not None:
        redactor.add_basic_auth(connection.username, password)
    return redactor


# --- the run's redactor ---------------------------------------------------------------------------

_current: ContextVar[Redactor | None] = ContextVar("connect_redactor", default=None)


def bind(redactor: Redactor) -> None:
    """Make `redactor` the current task's (a run's task and the tasks it starts share it)."""
    _current.set(redactor)


def remember(redactor: Redactor) -> None:
    """Add secrets an adapter has just decrypted to the current run's redactor, if one is bound."""
    current = _current.get()
    if current is not None and current is not redactor:
        current.merge(redactor)


def scrub(text: str) -> str:
    """`text` scrubbed with the current run's redactor (unchanged outside a run)."""
    current = _current.get()
    return current.scrub(text) if current is not None else text
