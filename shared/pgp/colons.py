"""What `gpg --with-colons` says about a key, read into `KeyFacts` (pure: no gpg here).

The format is gpg's machine interface (doc/DETAILS in GnuPG): one record a line, fields split by `:`;
`pub`/`sec` starts a key, `fpr` gives the fingerprint of the record before it, `uid` a user id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

ALGORITHMS = {1: "RSA", 2: "RSA", 3: "RSA", 16: "ElGamal", 17: "DSA", 18: "ECDH", 19: "ECDSA", 22: "EdDSA"}
USAGE = {"E": "encrypt", "S": "sign", "C": "certify", "A": "authenticate"}
ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")


@dataclass(frozen=True)
class KeyFacts:
    """A key as the catalog shows it and the streaming functions check it (never its material)."""

    fingerprint: str
    user_ids: tuple[str, ...]
    algorithm: str  # of the primary key: "EdDSA ed25519", "RSA 3072"
    created: datetime
    expires: datetime | None
    revoked: bool
    expired: bool
    usage: tuple[str, ...]  # what the key as a whole can still do: "encrypt", "sign", …
    has_secret: bool = False

    def can(self, usage: str) -> bool:
        return usage in self.usage


def unescape(field: str) -> str:
    """gpg writes `:` and control characters of a user id as `\\xNN` (the rest as UTF-8)."""
    return ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), field.encode()).decode(errors="replace")


def when(field: str) -> datetime | None:
    return datetime.fromtimestamp(int(field), UTC) if field.isdigit() else None


def algorithm(fields: list[str]) -> str:
    name = ALGORITHMS.get(int(fields[3]) if fields[3].isdigit() else -1, f"algorithm {fields[3]}")
    curve = fields[16] if len(fields) > 16 else ""
    return f"{name} {curve}" if curve else f"{name} {fields[2]}"


def parse_keys(text: str) -> list[KeyFacts]:
    """Every key of a `--with-colons --fixed-list-mode` listing, in order."""
    keys: list[KeyFacts] = []
    current: dict[str, object] | None = None
    previous = ""

    def finish() -> None:
        if current is not None:
            keys.append(KeyFacts(**current))  # type: ignore[arg-type]

    for line in text.splitlines():
        fields = line.split(":")
        kind = fields[0]
        if kind in ("pub", "sec"):
            finish()
            current = {
                "fingerprint": "",
                "user_ids": (),
                "algorithm": algorithm(fields),
                "created": when(fields[5]),
                "expires": when(fields[6]),
                "revoked": fields[1] == "r",
                "expired": fields[1] == "e",
                "usage": tuple(USAGE[c] for c in fields[11] if c in USAGE),
                "has_secret": kind == "sec",
            }
        elif current is not None and kind == "fpr" and previous in ("pub", "sec"):
            current["fingerprint"] = fields[9]
        elif current is not None and kind == "uid" and fields[1] != "r":
            current["user_ids"] = (*current["user_ids"], unescape(fields[9]))  # type: ignore[misc]
        previous = kind
    finish()
    return keys
