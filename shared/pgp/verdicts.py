"""What a key may be used for and what gpg's status lines mean, as Connect's errors (pure rules)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from shared.pgp.colons import KeyFacts
from shared.pgp.errors import (
    KeyExpired,
    KeyNotSecret,
    KeyRevoked,
    KeyUnsuitable,
    MessageCorrupt,
    NotEncryptedToKey,
    PgpError,
    SignatureBad,
    SignatureMissing,
    WrongPassphrase,
    WrongSigner,
)
from shared.pgp.gpg import BAD_PASSPHRASE, NO_PASSPHRASE, Outcome

NO_PUBLIC_KEY = "9"  # ERRSIG's reason: the signer's key is not among those given


def check_usable(key: KeyFacts, field: str, *, usage: str | None = None, secret: bool = False) -> None:
    """Refuse a revoked or expired key, a public key where the private one is needed, and a key that
    cannot `usage` ("encrypt", "sign")."""
    if key.revoked:
        raise KeyRevoked(f"{field}: key {key.fingerprint} is revoked", field=field)
    expired = key.expires is not None and key.expires <= datetime.now(UTC)
    if key.expired or expired:
        since = f" since {key.expires:%Y-%m-%d %H:%M} UTC" if key.expires else ""
        raise KeyExpired(f"{field}: key {key.fingerprint} has expired{since}", field=field)
    if secret and not key.has_secret:
        raise KeyNotSecret(
            f"{field}: key {key.fingerprint} is a public key; give the private key (it is kept encrypted)",
            field=field,
        )
    if usage is not None and not key.can(usage):
        raise KeyUnsuitable(f"{field}: key {key.fingerprint} has no valid key to {usage} with", field=field)


def passphrase_error(outcome: Outcome, key: KeyFacts, given: bool, field: str) -> PgpError | None:
    codes = outcome.error_codes()
    if BAD_PASSPHRASE in codes and given:
        return WrongPassphrase(f"{field}: wrong passphrase for key {key.fingerprint}", field=field)
    if codes & NO_PASSPHRASE or BAD_PASSPHRASE in codes or (outcome.has("NEED_PASSPHRASE") and not given):
        return WrongPassphrase(
            f"{field}: key {key.fingerprint} is protected by a passphrase; none was given", field=field
        )
    return None


def decryption_error(outcome: Outcome, key: KeyFacts, passphrase_given: bool) -> PgpError | None:
    """Why gpg did not decrypt the whole message with `key`, or None when it did and checked its integrity."""
    refused = passphrase_error(outcome, key, passphrase_given, "passphrase")
    if refused is not None:
        return refused
    if outcome.has("NO_SECKEY") and not outcome.has("DECRYPTION_KEY"):
        ids = ", ".join(args[0] for args in outcome.args("NO_SECKEY") if args)
        return NotEncryptedToKey(
            f"the file is encrypted to key id(s) {ids}, not to key {key.fingerprint}", field="decrypt_with"
        )
    if outcome.has("BADMDC") or outcome.has("DECRYPTION_FAILED"):
        return MessageCorrupt(
            "the file was changed or damaged after it was encrypted (integrity check failed)"
        )
    if outcome.has("DECRYPTION_OKAY"):
        return None  # gpg's exit code may still say a signature could not be checked: signature_error's part
    if outcome.has("PLAINTEXT") and not outcome.has("BEGIN_DECRYPTION"):
        return NotEncryptedToKey("the file is not encrypted (a signed or plain file)", field="decrypt_with")
    if outcome.has("NODATA") and not outcome.has("BEGIN_DECRYPTION"):
        return MessageCorrupt("the file is not an OpenPGP message (armoured or binary)")
    return MessageCorrupt(f"the file cannot be decrypted: {outcome.last_message()}")


def signature_error(outcome: Outcome, signers: Collection[str]) -> PgpError | None:
    """None when a good signature of one of `signers` (primary fingerprints) covers the data.

    One bad signature fails the file even beside a good one: the data is not what someone signed.
    """
    wanted = ", ".join(sorted(signers))
    if outcome.args("BADSIG"):
        return SignatureBad(
            "bad signature: the file was changed after it was signed, or the signature is damaged"
        )
    for args in outcome.args("REVKEYSIG"):
        return KeyRevoked(f"the file is signed by key id {args[0]}, which is revoked", field="verify_with")
    for args in outcome.args("EXPKEYSIG"):
        return KeyExpired(f"the file is signed by key id {args[0]}, which has expired", field="verify_with")
    good = {args[9] for args in outcome.args("VALIDSIG") if len(args) > 9}
    if good & set(signers):
        return None
    unknown = [args[0] for args in outcome.args("ERRSIG") if len(args) > 5 and args[5] == NO_PUBLIC_KEY]
    others = sorted(good - set(signers))
    if unknown or others:
        by = ", ".join(unknown + others)
        return WrongSigner(f"the file is signed by {by}, not by any of {wanted}", field="verify_with")
    if outcome.args("ERRSIG"):
        return SignatureBad("the file's signature cannot be checked (unsupported or damaged)")
    return SignatureMissing(
        f"the file is not signed; a signature by {wanted} is required", field="verify_with"
    )
