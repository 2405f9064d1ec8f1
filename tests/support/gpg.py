"""An independent OpenPGP tool for tests: Debian's `gpg` in a temporary home, in batch mode, making the keys
and messages that Connect must read, and reading what Connect writes. Nothing of `shared.pgp` is used here.

    with Gpg(tmp_path / "gpg") as gpg:
        partner = gpg.generate("Partner <p@example.com>")
        message = gpg.encrypt(b"a,b\n", [partner.fingerprint], armor=True)
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


@dataclass(frozen=True)
class GpgKey:
    fingerprint: str
    passphrase: str
    public: bytes  # armoured
    secret: bytes  # armoured, protected by `passphrase` (if any)


class Gpg:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The lowest key-derivation work (gpg calibrates to ~100 ms a use otherwise): test keys need no more.
        (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\ns2k-count 65536\n")

    def __enter__(self) -> Gpg:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self._env(), check=False, capture_output=True)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home), "LC_ALL": "C"}

    def run(self, *args: str, data: bytes = b"", passphrase: str | None = None, check: bool = True) -> bytes:
        base = [
            "gpg",
            "--batch",
            "--yes",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--trust-model",
            "always",
        ]
        if passphrase is not None:
            base += ["--passphrase", passphrase]
        done = subprocess.run([*base, *args], input=data, env=self._env(), capture_output=True, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"gpg {' '.join(args)} failed: {done.stderr.decode()[-800:]}")
        return done.stdout

    def generate(
        self, user_id: str, passphrase: str = "", *, expire: str = "never", created: str | None = None
    ) -> GpgKey:
        """An ed25519 key with a cv25519 encryption subkey; `created` (gpg's `20200101T000000`) backdates
        it, so that with `expire="1d"` it has expired long ago."""
        faked = ["--faked-system-time", created] if created else []
        self.run(
            *faked, "--quick-gen-key", user_id, "future-default", "default", expire, passphrase=passphrase
        )
        listing = self.run("--with-colons", "--list-keys", user_id).decode()
        fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr"))
        return self.key(fingerprint, passphrase)

    def key(self, fingerprint: str, passphrase: str = "") -> GpgKey:
        public = self.run("--armor", "--export", fingerprint)
        secret = self.run("--armor", "--export-secret-keys", fingerprint, passphrase=passphrase)
        return GpgKey(fingerprint, passphrase, public, secret)

    def revoke(self, key: GpgKey) -> GpgKey:
        """Import the revocation certificate gpg made with the key: the key is revoked from now on."""
        certificate = (self.home / "openpgp-revocs.d" / f"{key.fingerprint}.rev").read_text()
        self.run("--import", data=certificate.replace(":-----BEGIN", "-----BEGIN").encode())
        return self.key(key.fingerprint, key.passphrase)

    def encrypt(
        self, data: bytes, recipients: list[str], *, sign_with: GpgKey | None = None, armor: bool = False
    ) -> bytes:
        args = [arg for fingerprint in recipients for arg in ("--recipient", fingerprint)]
        if sign_with is not None:
            args += ["--sign", "--local-user", sign_with.fingerprint]
        args += ["--armor"] if armor else []
        passphrase = sign_with.passphrase if sign_with else None
        return self.run(*args, "--encrypt", data=data, passphrase=passphrase)

    def encrypt_file(
        self, source: Path, target: Path, recipients: list[str], sign_with: GpgKey | None = None
    ) -> None:
        args = [arg for fingerprint in recipients for arg in ("--recipient", fingerprint)]
        if sign_with is not None:
            args += ["--sign", "--local-user", sign_with.fingerprint]
        self.run(*args, "--compress-algo", "none", "--output", str(target), "--encrypt", str(source))

    def sign(self, data: bytes, signer: GpgKey) -> bytes:
        """Signed, not encrypted."""
        return self.run("--local-user", signer.fingerprint, "--sign", data=data, passphrase=signer.passphrase)

    def decrypt(self, data: bytes, key: GpgKey) -> tuple[bytes, str]:
        """The plaintext, and gpg's status lines (to see who signed it)."""
        status = self.home / f"status-{time.monotonic_ns()}"
        plaintext = self.run("--status-file", str(status), "--decrypt", data=data, passphrase=key.passphrase)
        return plaintext, status.read_text()
