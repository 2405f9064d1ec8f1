"""What can go wrong with a PGP key or message, in the project's one hierarchy (`shared.errors`).

Every one is permanent: the same key, passphrase or file fails the same way again. Messages name keys by
fingerprint or key id and say what to do; they never carry key material or a passphrase. `field` names
the part of the request that is wrong (`key`, `passphrase`, `verify_with`, …) when one is.
"""

from __future__ import annotations

from shared.errors import PermanentError


class PgpError(PermanentError):
    code = "pgp_error"


class KeyUnreadable(PgpError):
    """Not an OpenPGP key, or more than one."""

    code = "pgp_key_unreadable"


class KeyExpired(PgpError):
    code = "pgp_key_expired"


class KeyRevoked(PgpError):
    code = "pgp_key_revoked"


class KeyNotSecret(PgpError):
    """A public key where a private key is needed (to decrypt or sign)."""

    code = "pgp_key_not_secret"


class KeyUnsuitable(PgpError):
    """The key cannot do what it is asked (no encryption subkey to encrypt to, no signing key to sign)."""

    code = "pgp_key_unsuitable"


class WrongPassphrase(PgpError):
    """The private key's passphrase is wrong, or missing for a protected key."""

    code = "pgp_wrong_passphrase"


class NotEncryptedToKey(PgpError):
    """The message is encrypted to other keys than the one given."""

    code = "pgp_not_encrypted_to_key"


class MessageCorrupt(PgpError):
    """Not an OpenPGP message, truncated, or changed after it was encrypted (integrity check failed)."""

    code = "pgp_message_corrupt"


class SignatureMissing(PgpError):
    code = "pgp_signature_missing"


class SignatureBad(PgpError):
    """A signature that does not match the data: the data or the signature was changed."""

    code = "pgp_signature_bad"


class WrongSigner(PgpError):
    """Signed, but by a key that is not among those to verify with."""

    code = "pgp_wrong_signer"


class GpgUnavailable(PgpError):
    """The `gpg` program is not installed (Debian package `gnupg`)."""

    code = "pgp_unavailable"
