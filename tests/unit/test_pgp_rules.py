"""The rules around gpg, without gpg: keys offered to the catalog, gpg's key listings, and what its status
lines mean (a signature verdict checked against a small reference model of the rules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.catalog.domain.keys import check_kind, key_material, text_bytes
from shared.catalog_records import PgpKeyKind
from shared.errors import ValidationFailed
from shared.pgp import (
    KeyExpired,
    KeyFacts,
    KeyRevoked,
    MessageCorrupt,
    NotEncryptedToKey,
    SignatureBad,
    SignatureMissing,
    WrongPassphrase,
    WrongSigner,
)
from shared.pgp.colons import parse_keys
from shared.pgp.gpg import Outcome
from shared.pgp.verdicts import check_usable, decryption_error, signature_error
from tests.conftest import examples

ARMOUR = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n"
PARTNER, OTHER = "A" * 40, "B" * 40


def facts(**overrides: object) -> KeyFacts:
    base = {"fingerprint": PARTNER, "user_ids": ("p",), "algorithm": "EdDSA ed25519",
            "created": datetime(2026, 1, 1, tzinfo=UTC), "expires": None, "revoked": False,
            "expired": False, "usage": ("sign", "certify", "encrypt"), "has_secret": True}  # fmt: skip
    return KeyFacts(**(base | overrides))  # type: ignore[arg-type]


def outcome(*lines: str, returncode: int = 0) -> Outcome:
    statuses = [(line.split(" ")[0], line.split(" ")[1:]) for line in lines]
    return Outcome(returncode=returncode, statuses=statuses)


def test_a_key_is_given_in_exactly_one_form() -> None:
    assert key_material(ARMOUR, None) == ARMOUR.encode()
    assert key_material(None, "mQ\n EN") == b"\x99\x01\x0d"  # line breaks of a pasted base64 are fine
    for armored, b64, field in [(None, None, "armored"), (ARMOUR, "AQ==", "armored"), ("xjMEZ", None, "armored"),
                                (None, "%%", "base64"), (None, "", "base64")]:  # fmt: skip
        with pytest.raises(ValidationFailed) as refused:
            key_material(armored, b64)
        assert refused.value.field == field
    with pytest.raises(ValidationFailed, match="surrogate"):
        text_bytes("pass\ud800word", "passphrase")


def test_the_kind_asked_for_is_the_kind_given() -> None:
    check_kind(PgpKeyKind.PRIVATE, True, True, "armored")
    check_kind(PgpKeyKind.PUBLIC, False, False, "base64")
    with pytest.raises(ValidationFailed, match="this is a public key") as public_as_private:
        check_kind(PgpKeyKind.PRIVATE, False, False, "base64")
    assert public_as_private.value.field == "base64"
    with pytest.raises(ValidationFailed, match="this is a private key"):
        check_kind(PgpKeyKind.PUBLIC, True, False, "armored")
    with pytest.raises(ValidationFailed, match="no passphrase") as passphrase:
        check_kind(PgpKeyKind.PUBLIC, False, True, "armored")
    assert passphrase.value.field == "passphrase"


def test_a_colons_listing_reads_as_key_facts() -> None:
    listing = "\n".join([
        "pub:e:3072:1:49C1443B02952A1E:1577836800:1577923200::-:::sc:::::::0:",
        f"fpr:::::::::{PARTNER}:",
        "uid:e::::1577836800::AD66::Data\\x3a Feeds <d@p.example>::::::::::0:",
        "uid:r::::1577836800::AD67::Old Name <old@p.example>::::::::::0:",
        "sub:e:3072:1:06F77820C624BF83:1577836800::::::e::::::",
        "fpr:::::::::A2D6EF842CE64BD6802423B206F77820C624BF83:",
    ])  # fmt: skip
    (key,) = parse_keys(listing)
    assert key.fingerprint == PARTNER  # the primary's, not the subkey's
    assert key.user_ids == ("Data: Feeds <d@p.example>",)  # escaped ':' read back; revoked uid left out
    assert key.algorithm == "RSA 3072" and key.expired and not key.revoked and key.usage == ()
    assert key.created == datetime(2020, 1, 1, tzinfo=UTC) and key.expires == datetime(2020, 1, 2, tzinfo=UTC)


def test_usable_keys_are_valid_private_where_needed_and_able() -> None:
    check_usable(facts(), "decrypt_with", secret=True, usage="encrypt")
    cases = [
        (facts(revoked=True), KeyRevoked),
        (facts(expires=datetime.now(UTC) - timedelta(seconds=1)), KeyExpired),  # expired since it was read
        (facts(has_secret=False), Exception),
        (facts(usage=("sign",)), Exception),
    ]
    for key, error in cases:
        with pytest.raises(error) as refused:
            check_usable(key, "encrypt_to[2]", secret=True, usage="encrypt")
        assert refused.value.field == "encrypt_to[2]"  # type: ignore[attr-defined]


def test_gpg_decryption_statuses_mean_specific_errors() -> None:
    key = facts()
    ok = ("BEGIN_DECRYPTION", "DECRYPTION_OKAY", "GOODMDC", "END_DECRYPTION")
    assert decryption_error(outcome(*ok), key, True) is None
    assert decryption_error(outcome(*ok, "ERRSIG 1 22 8 00 1 9 -", returncode=2), key, True) is None
    cases = [
        (
            outcome("ERROR pkdecrypt_failed 67108875", "DECRYPTION_FAILED", returncode=2),
            True,
            WrongPassphrase,
        ),
        (outcome("NEED_PASSPHRASE 06F7 49C1 18 0", returncode=2), False, WrongPassphrase),
        (outcome("NO_SECKEY 1ABADFF6094B6C08", "DECRYPTION_FAILED", returncode=2), True, NotEncryptedToKey),
        (outcome("BEGIN_DECRYPTION", "BADMDC", "DECRYPTION_FAILED", returncode=2), True, MessageCorrupt),
        (outcome("NODATA 1", "NODATA 2", returncode=2), True, MessageCorrupt),
        (outcome("PLAINTEXT 62 0", "GOODSIG 1 p"), True, NotEncryptedToKey),
        (outcome("BEGIN_DECRYPTION", returncode=2), True, MessageCorrupt),  # cut short
    ]
    for status, given_passphrase, error in cases:
        assert isinstance(decryption_error(status, key, given_passphrase), error), status


# One signature of a message, as gpg reports it; and what the rules say of the message as a whole.
SIGNATURES = [
    "good_partner",
    "good_other",
    "bad",
    "unknown_signer",
    "expired_signer",
    "revoked_signer",
    "odd",
]


def status_lines(signature: str) -> list[str]:
    fpr = OTHER if signature == "good_other" else PARTNER
    return {
        "good_partner": ["GOODSIG 1 p", f"VALIDSIG {fpr} 2026-01-01 0 0 4 0 22 8 00 {fpr}"],
        "good_other": ["GOODSIG 2 o", f"VALIDSIG {fpr} 2026-01-01 0 0 4 0 22 8 00 {fpr}"],
        "bad": ["BADSIG 1 p"],
        "unknown_signer": ["ERRSIG 3 22 8 00 0 9 -"],
        "expired_signer": ["EXPKEYSIG 1 p", f"VALIDSIG {PARTNER} 2026-01-01 0 0 4 0 22 8 00 {PARTNER}"],
        "revoked_signer": ["REVKEYSIG 1 p", f"VALIDSIG {PARTNER} 2026-01-01 0 0 4 0 22 8 00 {PARTNER}"],
        "odd": ["ERRSIG 1 99 8 00 0 4 -"],  # an algorithm gpg cannot check
    }[signature]


def expected(signatures: list[str]) -> type[Exception] | None:
    """The rules, in order: any bad signature fails the file; a revoked or expired signer fails it; else a
    good signature by a key to verify with passes; else signed by someone else is a wrong signer; else a
    signature that cannot be checked is bad; else it is missing."""
    present = set(signatures)
    if "bad" in present:
        return SignatureBad
    if "revoked_signer" in present:
        return KeyRevoked
    if "expired_signer" in present:
        return KeyExpired
    if "good_partner" in present:
        return None
    if present & {"good_other", "unknown_signer"}:
        return WrongSigner
    if "odd" in present:
        return SignatureBad
    return SignatureMissing


@settings(max_examples=examples(150))
@given(st.lists(st.sampled_from(SIGNATURES), max_size=4))
def test_the_signature_verdict_follows_the_rules(signatures: list[str]) -> None:
    lines = [line for signature in signatures for line in status_lines(signature)]
    verdict = signature_error(outcome("BEGIN_DECRYPTION", "DECRYPTION_OKAY", *lines), [PARTNER])
    want = expected(signatures)
    assert (verdict is None) if want is None else type(verdict) is want, (signatures, verdict)
