"""Rules of OpenPGP keys offered to the catalog: one form of the key given, decoded; the kind asked for is
the kind given (a private key is never stored as a public one, nor a public key where a private is needed)."""

from __future__ import annotations

import base64
import binascii

from shared.catalog_records import PgpKeyKind
from shared.errors import ValidationFailed


def key_material(armored: str | None, base64_key: str | None) -> bytes:
    """The key's bytes, from exactly one of `armored` (ASCII armour) and `base64` (binary, base64)."""
    if (armored is None) == (base64_key is None):
        raise ValidationFailed("key: give the key as `armored` or as `base64`, one of them", field="armored")
    if armored is not None:
        if "-----BEGIN PGP" not in armored:
            raise ValidationFailed(
                "armored: not an ASCII-armoured key (-----BEGIN PGP … KEY BLOCK-----)", field="armored"
            )
        return text_bytes(armored, "armored")
    assert base64_key is not None
    try:
        material = base64.b64decode("".join(base64_key.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("base64: not base64", field="base64") from None
    if not material:
        raise ValidationFailed("base64: empty", field="base64")
    return material


def text_bytes(value: str, field: str) -> bytes:
    """UTF-8 of a JSON string, which may hold lone surrogates (`\\ud800`) no key or passphrase has."""
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise ValidationFailed(f"{field}: not valid text (a lone surrogate)", field=field) from None


def check_kind(kind: PgpKeyKind, has_secret: bool, passphrase_given: bool, field: str) -> None:
    """`field` is where the key was given (`armored` or `base64`)."""
    if kind is PgpKeyKind.PRIVATE and not has_secret:
        raise ValidationFailed(
            f"{field}: this is a public key; a private key is needed for kind private "
            "(or store it with kind public)",
            field=field,
        )
    if kind is PgpKeyKind.PUBLIC and has_secret:
        raise ValidationFailed(
            f"{field}: this is a private key; give kind private to keep it (encrypted), "
            "or give only its public key",
            field=field,
        )
    if kind is PgpKeyKind.PUBLIC and passphrase_given:
        raise ValidationFailed("passphrase: a public key has no passphrase", field="passphrase")
