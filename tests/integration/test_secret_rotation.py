"""`connect admin rotate-secrets` on the real DB server: every kind re-encrypted, still usable, idempotent."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from services.catalog.adapters.secret_rotation import rotate_secrets
from shared.catalog_records import ConnectionRecord
from shared.collections import CatalogCollections as C
from shared.errors import PermanentError
from shared.mongo import MongoClient
from shared.secrets import Binding, SecretBox, generate_key
from shared.settings import CommonSettings
from shared.ssh import SshCredentials, ssh_credentials

LEGACY = "the-old-passphrase-2024"  # first format (Fernet of SHA-256), before #19
OLD, NEW = generate_key(), generate_key()


def legacy(plaintext: str) -> str:
    return (
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(LEGACY.encode()).digest()))
        .encrypt(plaintext.encode())
        .decode()
    )


async def test_rotate_secrets_re_encrypts_every_kind_once(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    db = mongo[settings.database("catalog")]
    old = SecretBox(OLD)
    now: dict[str, Any] = {"created_at": datetime.now(UTC), "created_by": "t"}
    await db[C.CONNECTIONS].insert_one({
        "_id": 1, "kind": "sftp", "name": "c", "host": "h", "username": "ann", "host_key": "k",
        "password_encrypted": legacy("pw-1"),
        "private_key_encrypted": old.encrypt("key-1", Binding("connection", 1, "private_key_encrypted")), **now,
    })  # fmt: skip
    await db[C.NOTIFICATION_CHANNELS].insert_one(
        {
            "_id": 2,
            "kind": "webhook",
            "name": "w",
            "url": "http://x",
            "secret_encrypted": legacy("whsec-2"),
            **now,
        }
    )
    await db[C.PGP_KEYS].insert_one({
        "_id": 3, "name": "k", "private_key_encrypted": old.encrypt("pgp-3", Binding("pgp_key", 3, "private_key_encrypted")),
        "passphrase_encrypted": None, **now,
    })  # fmt: skip
    box = SecretBox(NEW, old_keys=[OLD, LEGACY], salt="deployment-salt-0001")

    first = await rotate_secrets(db, box)
    again = await rotate_secrets(db, box)

    assert first.rotated == {"connection": 2, "notification_channel": 1, "pgp_key": 1}
    assert again.rotated == {"connection": 0, "notification_channel": 0, "pgp_key": 0}  # safe to re-run
    assert again.examined == first.examined
    newest_only = SecretBox(NEW)  # after rotation the old keys can go
    record = ConnectionRecord.model_validate(await db[C.CONNECTIONS].find_one({"_id": 1}))
    assert ssh_credentials(record, newest_only) == SshCredentials("pw-1", "key-1")
    channel = await db[C.NOTIFICATION_CHANNELS].find_one({"_id": 2})
    assert channel is not None
    assert (
        newest_only.decrypt(
            channel["secret_encrypted"], Binding("notification_channel", 2, "secret_encrypted")
        )
        == "whsec-2"
    )
    key = await db[C.PGP_KEYS].find_one({"_id": 3})
    assert key is not None
    assert (
        newest_only.decrypt(key["private_key_encrypted"], Binding("pgp_key", 3, "private_key_encrypted"))
        == "pgp-3"
    )


async def test_a_ciphertext_copied_onto_another_connection_does_not_decrypt(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    db = mongo[settings.database("catalog")]
    box = SecretBox(NEW)
    fields: dict[str, Any] = {"kind": "sftp", "host": "h", "username": "ann", "host_key": "k",
                              "created_at": datetime.now(UTC), "created_by": "t"}  # fmt: skip
    token = box.encrypt("pw-1", Binding("connection", 1, "password_encrypted"))
    await db[C.CONNECTIONS].insert_many([
        {"_id": 1, "name": "one", "password_encrypted": token, **fields},
        {"_id": 2, "name": "two", "password_encrypted": token, **fields},  # copied by someone with DB access
    ])  # fmt: skip

    copied = ConnectionRecord.model_validate(await db[C.CONNECTIONS].find_one({"_id": 2}))
    with pytest.raises(PermanentError, match="does not belong to connection 2"):
        ssh_credentials(copied, box)
    with pytest.raises(PermanentError, match="does not belong to connection 2"):
        await rotate_secrets(db, SecretBox(generate_key(), old_keys=[NEW]))  # rotation never launders a copy


def connect_admin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "connect"), "admin", *args]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def test_generate_key_prints_a_new_key_the_services_accept() -> None:
    first, second = (connect_admin("generate-key", env={}).stdout.strip() for _ in range(2))
    assert len(base64.b64decode(first, validate=True)) == 32 and first != second
    SecretBox(first)  # not refused as weak


async def test_the_rotate_secrets_command_re_encrypts_with_the_newest_key(
    mongo: MongoClient, settings: CommonSettings
) -> None:
    db = mongo[settings.database("catalog")]
    binding = Binding("connection", 1, "password_encrypted")
    await db[C.CONNECTIONS].insert_one({
        "_id": 1, "kind": "sftp", "name": "c", "host": "h", "username": "ann", "host_key": "k",
        "password_encrypted": SecretBox(OLD).encrypt("pw-1", binding),
        "created_at": datetime.now(UTC), "created_by": "t",
    })  # fmt: skip
    env = {"MONGO_URL": settings.mongo_url or "", "CONNECT_DB_PREFIX": settings.db_prefix,
           "CONNECT_SECRET_KEY": NEW, "CONNECT_OLD_SECRET_KEYS": f" {generate_key()}, {OLD}"}  # fmt: skip

    first = await asyncio.to_thread(connect_admin, "rotate-secrets", env=env)
    again = await asyncio.to_thread(connect_admin, "rotate-secrets", env=env)
    weak = await asyncio.to_thread(
        connect_admin, "rotate-secrets", env={**env, "CONNECT_SECRET_KEY": "changeme"}
    )

    assert first.returncode == 0 and "connection: 1 re-encrypted of 1" in first.stdout, first.stderr
    assert again.returncode == 0 and "connection: 0 re-encrypted of 1" in again.stdout, again.stderr
    stored = await db[C.CONNECTIONS].find_one({"_id": 1})
    assert stored is not None and SecretBox(NEW).decrypt(stored["password_encrypted"], binding) == "pw-1"
    assert weak.returncode != 0 and "CONNECT_SECRET_KEY refused" in weak.stderr
    still = await db[C.CONNECTIONS].find_one({"_id": 1})
    assert (
        still is not None and still["password_encrypted"] == stored["password_encrypted"]
    )  # nothing changed
