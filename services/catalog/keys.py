"""OpenPGP keys (admin): partners' public keys and Connect's own private keys, which jobs' `pgp` settings
will name (docs/pgp.md). A key is read by gpg at upload; what it is and can do is shown, never a secret."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from services.catalog import audit
from services.catalog.domain.keys import check_key_uses, check_kind, key_material, key_uses, text_bytes
from services.catalog.key_schemas import KeyCreate, KeyView
from services.catalog.ports import CatalogRecords, CatalogRepository, KeyReader, UnitOfWork
from shared.catalog_records import PgpKeyKind, PgpKeyRecord
from shared.contracts.jobs import JobSpec
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.pgp import PgpError
from shared.secrets import Binding, SecretBox

SECRETS = {"private_key_encrypted", "passphrase_encrypted"}


class PgpKeys:
    def __init__(self, records: CatalogRepository, secret_box: SecretBox, reader: KeyReader) -> None:
        self.records = records
        self.secret_box = secret_box
        self.reader = reader

    async def create(self, body: KeyCreate, by: str) -> KeyView:
        armored = body.armored.get_secret_value() if body.armored else None
        given = body.base64.get_secret_value() if body.base64 else None
        field = "armored" if armored is not None else "base64"
        material = key_material(armored, given)
        passphrase = body.passphrase.get_secret_value() if body.passphrase else None
        if passphrase is not None:
            text_bytes(passphrase, "passphrase")
        try:
            inspected = await self.reader.inspect(material, passphrase, field)
        except PgpError as exc:
            raise ValidationFailed(exc.message, field=exc.field or field) from None  # gpg's verdict: a 422
        facts = inspected.facts
        check_kind(body.kind, facts.has_secret, passphrase is not None, field)
        private = body.kind is PgpKeyKind.PRIVATE
        key_id = await self.records.keys.new_id()
        record = PgpKeyRecord.model_validate({
            "_id": key_id,
            "name": body.name,
            "kind": body.kind,
            "fingerprint": facts.fingerprint,
            "user_ids": facts.user_ids,
            "algorithm": facts.algorithm,
            "usage": facts.usage,
            "key_created": facts.created,
            "expires": facts.expires,
            "public_key": inspected.public_key,
            "private_key_encrypted": self.secret_box.encrypt(
                base64.b64encode(material).decode(), Binding("pgp_key", key_id, "private_key_encrypted")
            ) if private else None,
            "passphrase_encrypted": self.secret_box.encrypt(
                passphrase, Binding("pgp_key", key_id, "passphrase_encrypted")
            ) if private and passphrase else None,
            "created_at": datetime.now(UTC),
            "created_by": by,
        })  # fmt: skip
        entry = audit.change_entry(by, "key", record.id, "created", after=record)
        await audit.with_entry(self.records, lambda unit: unit.keys.add(record), entry)
        return key_view(record)

    async def get(self, key_id: int) -> KeyView:
        record = await self.records.keys.get(key_id)
        if record is None:
            raise NotFound(f"key {key_id} does not exist", field="key_id")
        return key_view(record)

    async def page(self, *, offset: int, limit: int) -> tuple[list[KeyView], int]:
        records, total = await self.records.keys.page(offset=offset, limit=limit)
        return [key_view(record) for record in records], total

    async def delete(self, key_id: int, by: str) -> None:
        # A job's runs would fail without the key: refused while one names it. (A job saved at the same
        # moment may still name a key deleted meanwhile; its runs then fail with "key … does not exist".)
        naming = await self.records.jobs.naming_key(key_id)
        if naming:
            jobs = ", ".join(f"{job_id} ({name})" for job_id, name in sorted(naming.items()))
            raise Conflict(f"key {key_id} is named by job(s) {jobs}; change or delete them first",
                           field="key_id")  # fmt: skip

        async def remove(unit: UnitOfWork) -> None:
            if not await unit.keys.remove(key_id):
                raise NotFound(f"key {key_id} does not exist", field="key_id")

        await audit.with_entry(self.records, remove, audit.change_entry(by, "key", key_id, "deleted"))


async def check_job_keys(records: CatalogRecords, spec: JobSpec) -> None:
    """A job's `pgp` settings name keys that exist and can do what the job asks of them (422 naming the field)."""
    uses = key_uses(spec)
    if uses:
        keys = await records.keys.get_many({use.key_id for use in uses})
        check_key_uses(uses, keys, datetime.now(UTC))


def key_view(record: PgpKeyRecord) -> KeyView:
    expired = record.expires is not None and record.expires <= datetime.now(UTC)
    return KeyView(**record.model_dump(exclude=SECRETS), expired=expired)
