"""Rules of SFTP connections, checked when one is created: keys that can be read, a base directory
without `..`. (asyncssh serves here only as the parser of OpenSSH and PEM key formats; no I/O.)"""

from __future__ import annotations

import asyncssh

from shared.errors import ValidationFailed
from shared.paths import has_parent_segment


def validate_sftp_connection(*, private_key: str | None, host_key: str, base_dir: str) -> None:
    """Refuse what would only fail at the first run: an unreadable key, a host key that is no key."""
    if private_key is not None:
        try:
            asyncssh.import_private_key(private_key)
        except Exception as exc:  # the parser's failures on odd input vary (KeyImportError, re.error …)
            raise ValidationFailed(
                f"private_key: not a readable unencrypted private key (OpenSSH or PEM): {_reason(exc)}",
                field="private_key",
            ) from exc
    try:
        asyncssh.import_public_key(host_key)
    except Exception as exc:  # as above
        raise ValidationFailed(
            "host_key: not a public key line such as `ssh-ed25519 AAAA…` "
            "(POST /connections/host-key returns the server's)",
            field="host_key",
        ) from exc
    if has_parent_segment(base_dir):
        raise ValidationFailed("base_dir: give the directory without '..' segments", field="base_dir")


def _reason(exc: Exception) -> str:
    # asyncssh's own messages name the problem ("Invalid PEM private key"), never the key's content;
    # other errors might quote the input, so they are not repeated.
    if isinstance(exc, asyncssh.KeyImportError) and str(exc):
        return str(exc).splitlines()[0][:120]
    return "the key cannot be parsed"
