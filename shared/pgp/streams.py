"""Decrypt and encrypt while streaming: the functions the executor's import and export runs call.

Each call gets its own throwaway gpg home holding only the keys it names, checks them first (revoked,
expired, private where needed, able to do the job) and names them in errors by the job's field.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence

from shared.errors import ValidationFailed
from shared.pgp.errors import PgpError
from shared.pgp.gpg import GpgHome, Outcome
from shared.pgp.verdicts import check_usable, decryption_error, passphrase_error, signature_error

# Recipients' keys are the ones the job names: gpg's web of trust has no say here.
TRUST = ["--trust-model", "always"]


async def decrypt_stream(
    chunks: AsyncIterable[bytes],
    private_key: bytes,
    passphrase: str | None = None,
    verify_with: Sequence[bytes] | None = None,
) -> AsyncIterator[bytes]:
    """The plaintext of the OpenPGP message in `chunks` (binary or armoured), as it is decrypted.

    Plaintext comes before gpg has seen the end of the message, so the verdict comes last: a tampered
    or truncated file, or (when `verify_with` is given) a missing, bad or foreign signature, raises
    its `PgpError` after the last chunk and before the iteration ends. A caller keeps nothing of a
    stream that raised.
    """
    if verify_with is not None and not verify_with:
        raise ValidationFailed("verify_with: give at least one public key", field="verify_with")
    async with GpgHome() as home:
        key = await home.add(private_key, "decrypt_with")
        check_usable(key, "decrypt_with", secret=True)
        signers = []
        for index, material in enumerate(verify_with or ()):
            signer = await home.add(material, f"verify_with[{index}]")
            check_usable(signer, f"verify_with[{index}]", usage="sign")
            signers.append(signer.fingerprint)
        outcome = Outcome()
        async for chunk in home.pipe([*TRUST, "--decrypt"], chunks, outcome, passphrase):
            yield chunk
        error = decryption_error(outcome, key, passphrase is not None)
        if error is None and verify_with is not None:
            error = signature_error(outcome, signers)
        if error is not None:
            raise error


async def encrypt_stream(
    chunks: AsyncIterable[bytes],
    recipients: Sequence[bytes],
    sign_with: bytes | None = None,
    sign_passphrase: str | None = None,
    *,
    armor: bool = False,
) -> AsyncIterator[bytes]:
    """`chunks` encrypted to every recipient's public key (and signed with `sign_with`), as an OpenPGP
    message: binary, or ASCII-armoured with `armor`."""
    if not recipients:
        raise ValidationFailed("encrypt_to: give at least one public key", field="encrypt_to")
    async with GpgHome() as home:
        args = [*TRUST, "--encrypt"]
        for index, material in enumerate(recipients):
            recipient = await home.add(material, f"encrypt_to[{index}]")
            check_usable(recipient, f"encrypt_to[{index}]", usage="encrypt")
            args += ["--recipient", recipient.fingerprint]
        signer = None
        if sign_with is not None:
            signer = await home.add(sign_with, "sign_with")
            check_usable(signer, "sign_with", usage="sign", secret=True)
            args += ["--sign", "--local-user", signer.fingerprint]
        if armor:
            args.append("--armor")
        outcome = Outcome()
        async for chunk in home.pipe(args, chunks, outcome, sign_passphrase if signer else None):
            yield chunk
        if signer is not None:
            refused = passphrase_error(outcome, signer, sign_passphrase is not None, "sign_passphrase")
            if refused is not None:
                raise refused
        if outcome.returncode != 0 or not outcome.has("END_ENCRYPTION"):
            raise PgpError(f"encryption failed: {outcome.last_message()}")
