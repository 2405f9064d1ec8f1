"""`connect admin rotate-secrets`: re-encrypt every stored secret with the newest key.

Each field not already under the newest key is decrypted (bound to its record, old formats included) and
re-encrypted; the update only applies while the field still holds what was read, so a concurrent change wins
and a re-run finds nothing left to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.catalog.adapters.records import Database
from shared.collections import CatalogCollections
from shared.secrets import Binding, SecretBox

# The collections holding secrets: the kind in each secret's binding and the encrypted fields.
SECRET_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    CatalogCollections.CONNECTIONS: (
        "connection",
        ("password_encrypted", "private_key_encrypted", "token_encrypted"),
    ),
    CatalogCollections.NOTIFICATION_CHANNELS: (
        "notification_channel",
        ("password_encrypted", "secret_encrypted"),
    ),
    CatalogCollections.PGP_KEYS: ("pgp_key", ("private_key_encrypted", "passphrase_encrypted")),
}


@dataclass
class RotationReport:
    """Per kind: secrets examined and secrets re-encrypted."""

    examined: dict[str, int] = field(default_factory=dict)
    rotated: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"{kind}: {self.rotated[kind]} re-encrypted of {self.examined[kind]}" for kind in self.examined
        ]


async def rotate_secrets(db: Database, box: SecretBox) -> RotationReport:
    report = RotationReport()
    for collection, (kind, fields) in SECRET_FIELDS.items():
        report.examined[kind] = report.rotated[kind] = 0
        async for document in db[collection].find({"$or": [{name: {"$type": "string"}} for name in fields]}):
            for name in fields:
                token = document.get(name)
                if not isinstance(token, str):
                    continue
                report.examined[kind] += 1
                if box.is_current(token):
                    continue
                binding = Binding(kind, document["_id"], name)
                fresh = box.encrypt(box.decrypt(token, binding), binding)
                result = await db[collection].update_one(
                    {"_id": document["_id"], name: token}, {"$set": {name: fresh}}
                )
                report.rotated[kind] += result.modified_count
    return report
