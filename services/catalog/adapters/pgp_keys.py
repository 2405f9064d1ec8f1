"""`ports.KeyReader` by Debian's gpg (`shared.pgp`)."""

from __future__ import annotations

from shared.pgp import InspectedKey, inspect_key


class GpgKeyReader:
    async def inspect(self, material: bytes, passphrase: str | None, field: str) -> InspectedKey:
        return await inspect_key(material, passphrase, field)
