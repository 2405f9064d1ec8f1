"""Request and response bodies of the OpenPGP keys API (responses never carry a private key or passphrase)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, SecretStr

from services.catalog.schemas import NAME, Request, Response
from shared.catalog_records import PgpKeyKind


class KeyCreate(Request):
    """One OpenPGP key, as ASCII armour (`armored`) or as its binary form in base64 (`base64`)."""

    name: str = NAME
    kind: PgpKeyKind = Field(
        description="`public`: a partner's key (encrypt exports to it, verify its signatures). "
        "`private`: Connect's own (decrypt imports, sign exports); kept encrypted, never returned."
    )
    armored: SecretStr | None = Field(default=None, max_length=100_000, description="-----BEGIN PGP … -----")
    base64: SecretStr | None = Field(default=None, max_length=140_000, description="The binary key, base64.")
    passphrase: SecretStr | None = Field(
        default=None, max_length=1000, description="A private key's, when it is protected by one."
    )


class KeyView(Response):
    id: int
    name: str
    kind: PgpKeyKind
    fingerprint: str
    user_ids: list[str]
    algorithm: str = Field(description="Of the primary key, e.g. `EdDSA ed25519`, `RSA 3072`.")
    usage: list[str] = Field(description="What the key can do: `encrypt`, `sign`, `certify`, `authenticate`.")
    key_created: datetime
    expires: datetime | None
    expired: bool = Field(description="Expired by now: a run that names the key fails.")
    public_key: str = Field(
        description="The armoured public key (of a private key: the part to give partners)."
    )
    created_at: datetime
    created_by: str
