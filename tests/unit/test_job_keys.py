"""The catalog's rules for the keys a job's `pgp` settings name (services/catalog/domain/keys.py): where each
key is named, and which key is refused there, with the field in the error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.catalog.domain.keys import KeyUse, check_key_uses, key_uses
from shared.catalog_records import PgpKeyRecord
from shared.contracts.jobs import ExportSpec, ImportSpec
from shared.errors import ValidationFailed

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def key(
    key_id: int, kind: str = "public", usage: tuple[str, ...] = ("sign", "encrypt"), **extra: Any
) -> PgpKeyRecord:
    return PgpKeyRecord.model_validate({
        "_id": key_id, "name": f"k{key_id}", "kind": kind, "fingerprint": "F" * 40, "user_ids": [],
        "algorithm": "EdDSA ed25519", "usage": usage, "key_created": NOW, "public_key": "-----BEGIN",
        "created_at": NOW, "created_by": "t", **extra,
    })  # fmt: skip


def import_spec(**pgp: Any) -> ImportSpec:
    return ImportSpec.model_validate({
        "source": {"kind": "sftp", "connection_id": 1, "path": "c.csv.pgp", "pgp": pgp},
        "mapping": [{"column": "id", "field": "id"}], "target": {"kind": "custom", "table": "t"},
    })  # fmt: skip


def export_spec(**pgp: Any) -> ExportSpec:
    return ExportSpec.model_validate({
        "source": {"kind": "table", "table": "t"},
        "destination": {"kind": "sftp", "connection_id": 1, "path_template": "o.csv", "pgp": pgp},
    })  # fmt: skip


def test_each_key_is_named_by_its_field_with_what_it_must_do() -> None:
    assert key_uses(import_spec(decrypt_with=1, verify_with=[2, 3])) == [
        KeyUse("spec.source.pgp.decrypt_with", 1, "encrypt", private=True),
        KeyUse("spec.source.pgp.verify_with[0]", 2, "sign"),
        KeyUse("spec.source.pgp.verify_with[1]", 3, "sign"),
    ]
    assert key_uses(export_spec(encrypt_to=[4], sign_with=1)) == [
        KeyUse("spec.destination.pgp.encrypt_to[0]", 4, "encrypt"),
        KeyUse("spec.destination.pgp.sign_with", 1, "sign", private=True),
    ]
    assert key_uses(export_spec(encrypt_to=[4])) == [
        KeyUse("spec.destination.pgp.encrypt_to[0]", 4, "encrypt")
    ]


KEYS = {
    1: key(1, "private"),
    2: key(2),
    3: key(3, expires=NOW - timedelta(seconds=1)),
    4: key(4, usage=("sign", "certify")),
    5: key(5, expires=NOW + timedelta(days=1)),
}


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        (import_spec(decrypt_with=9), "spec.source.pgp.decrypt_with", "key 9 does not exist"),
        (import_spec(decrypt_with=2), "spec.source.pgp.decrypt_with", "is a public key"),
        (
            import_spec(decrypt_with=1, verify_with=[5, 3]),
            "spec.source.pgp.verify_with[1]",
            "has expired since",
        ),
        (export_spec(encrypt_to=[2, 4]), "spec.destination.pgp.encrypt_to[1]", "no valid key to encrypt"),
        (export_spec(encrypt_to=[2], sign_with=5), "spec.destination.pgp.sign_with", "is a public key"),
    ],
)
def test_an_unusable_key_is_refused_naming_its_field(
    spec: ImportSpec | ExportSpec, field: str, says: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_key_uses(key_uses(spec), KEYS, NOW)
    assert refused.value.field == field and says in refused.value.message


def test_usable_keys_pass() -> None:
    check_key_uses(key_uses(import_spec(decrypt_with=1, verify_with=[2, 5, 1])), KEYS, NOW)
    check_key_uses(key_uses(export_spec(encrypt_to=[2, 5, 1], sign_with=1)), KEYS, NOW)
