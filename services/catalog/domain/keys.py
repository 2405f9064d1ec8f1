"""Rules of OpenPGP keys offered to the catalog: one form of the key given, decoded; the kind asked for is
the kind given (a private key is never stored as a public one, nor a public key where a private is needed)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.catalog_records import PgpKeyKind, PgpKeyRecord
from shared.contracts.jobs import ExportSpec, ImportSpec, SftpDestination, SftpSource
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


# --- keys named by jobs (`spec.source.pgp`, `spec.destination.pgp`) -------------------------------


@dataclass(frozen=True)
class KeyUse:
    """Where a job names a key and what the key must be able to do there."""

    field: str  # `spec.source.pgp.decrypt_with`, `spec.destination.pgp.encrypt_to[0]`, …
    key_id: int
    usage: str  # "encrypt" or "sign"
    private: bool = False


def key_uses(spec: ImportSpec | ExportSpec) -> list[KeyUse]:
    if isinstance(spec, ImportSpec):
        if not isinstance(spec.source, SftpSource) or spec.source.pgp is None:
            return []
        source, at = spec.source.pgp, "spec.source.pgp"
        uses = [KeyUse(f"{at}.decrypt_with", source.decrypt_with, "encrypt", private=True)]
        return uses + [
            KeyUse(f"{at}.verify_with[{i}]", k, "sign") for i, k in enumerate(source.verify_with or ())
        ]
    if not isinstance(spec.destination, SftpDestination) or spec.destination.pgp is None:
        return []
    target, at = spec.destination.pgp, "spec.destination.pgp"
    uses = [KeyUse(f"{at}.encrypt_to[{i}]", k, "encrypt") for i, k in enumerate(target.encrypt_to)]
    if target.sign_with is not None:
        uses.append(KeyUse(f"{at}.sign_with", target.sign_with, "sign", private=True))
    return uses


def check_key_uses(uses: Sequence[KeyUse], keys: Mapping[int, PgpKeyRecord], now: datetime) -> None:
    """422 naming the field: a key that does not exist, a public key where Connect's private key is needed,
    an expired key, a key that cannot encrypt or sign as asked. (A revoked key was refused at upload, and
    a stored key cannot become revoked; expiry comes with time, so the executor checks again at each run.)"""
    for use in uses:
        key = keys.get(use.key_id)
        if key is None:
            raise ValidationFailed(f"{use.field}: key {use.key_id} does not exist", field=use.field)
        if use.private and key.kind is not PgpKeyKind.PRIVATE:
            raise ValidationFailed(
                f"{use.field}: key {use.key_id} ({key.name}) is a public key; a private key is needed here",
                field=use.field,
            )
        if key.expires is not None and key.expires <= now:
            raise ValidationFailed(
                f"{use.field}: key {use.key_id} ({key.name}) has expired since {key.expires:%Y-%m-%d %H:%M} UTC",
                field=use.field,
            )
        if use.usage not in key.usage:
            raise ValidationFailed(
                f"{use.field}: key {use.key_id} ({key.name}) has no valid key to {use.usage} with",
                field=use.field,
            )
