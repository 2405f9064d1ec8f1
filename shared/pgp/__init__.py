"""OpenPGP for partner files: keys read and checked, messages decrypted and encrypted while streaming.

Debian's `gpg` does the cryptography in its own process (why gpg: README, "Dependencies"); this package only moves
bytes and turns gpg's verdicts into Connect's errors (`errors.py`).
"""

from shared.pgp.colons import KeyFacts
from shared.pgp.errors import (
    GpgUnavailable,
    KeyExpired,
    KeyNotSecret,
    KeyRevoked,
    KeyUnreadable,
    KeyUnsuitable,
    MessageCorrupt,
    NotEncryptedToKey,
    PgpError,
    SignatureBad,
    SignatureMissing,
    WrongPassphrase,
    WrongSigner,
)
from shared.pgp.keys import InspectedKey, inspect_key
from shared.pgp.streams import decrypt_stream, encrypt_stream

__all__ = [
    "GpgUnavailable",
    "InspectedKey",
    "KeyExpired",
    "KeyFacts",
    "KeyNotSecret",
    "KeyRevoked",
    "KeyUnreadable",
    "KeyUnsuitable",
    "MessageCorrupt",
    "NotEncryptedToKey",
    "PgpError",
    "SignatureBad",
    "SignatureMissing",
    "WrongPassphrase",
    "WrongSigner",
    "decrypt_stream",
    "encrypt_stream",
    "inspect_key",
]
