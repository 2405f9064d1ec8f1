"""Documents the catalog stores and other services read as a read model (never write).

The executor reads connections (to reach SFTP or a REST endpoint) and table definitions (to map
and write records); the scheduler's schedule state is read by the catalog in return (see
`shared.schedule_state`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.jobs import FieldType, TableField


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TableKind(StrEnum):
    LIST = "list"
    PROFILE_EXTENSION = "profile_extension"
    CUSTOM = "custom"


# A list's system fields (DESIGN §4). RIID_ is assigned by Connect; the other three can be match columns.
LIST_SYSTEM_FIELDS: tuple[TableField, ...] = (
    TableField(name="RIID_", type=FieldType.INTEGER),
    TableField(name="EMAIL_ADDRESS_", type=FieldType.EMAIL),
    TableField(name="CUSTOMER_ID_", type=FieldType.STRING, max_length=255),
    TableField(name="MOBILE_NUMBER_", type=FieldType.PHONE),
    TableField(name="EMAIL_PERMISSION_STATUS_", type=FieldType.STRING, max_length=1),
    TableField(name="MOBILE_PERMISSION_STATUS_", type=FieldType.STRING, max_length=1),
)
LIST_MATCH_COLUMNS = ("RIID_", "EMAIL_ADDRESS_", "CUSTOMER_ID_", "MOBILE_NUMBER_")


class TableRecord(Record):
    """A table definition; its data lives in the audience database, collection `table_<name>`.

    * list: `fields` holds the system fields then the user fields; keyed by `RIID_`; each of
      `LIST_MATCH_COLUMNS` has a unique sparse index.
    * profile_extension: belongs to `parent_list`; one row per list record, keyed by `RIID_`.
    * custom: keyed by its own `primary_key` (one or two fields).
    """

    name: str
    kind: TableKind = TableKind.CUSTOM
    primary_key: tuple[str, ...] = Field(default=(), max_length=2)
    parent_list: str | None = None
    fields: tuple[TableField, ...]
    created_at: datetime
    created_by: str

    @property
    def collection(self) -> str:
        return table_collection(self.name)

    @property
    def key_fields(self) -> tuple[str, ...]:
        return ("RIID_",) if self.kind != TableKind.CUSTOM else self.primary_key

    def field(self, name: str) -> TableField | None:
        return next((f for f in self.fields if f.name == name), None)


def table_collection(table_name: str) -> str:
    return f"table_{table_name}"


class ConnectionKind(StrEnum):
    SFTP = "sftp"
    REST = "rest"


class ConnectionRecord(Record):
    """An SFTP endpoint or a REST endpoint. Secrets are stored encrypted (`shared.secrets.SecretBox`)."""

    id: int = Field(alias="_id")
    kind: ConnectionKind = ConnectionKind.SFTP
    name: str
    # sftp
    host: str = ""
    port: int = 22
    username: str = ""
    password_encrypted: str | None = None
    private_key_encrypted: str | None = None
    host_key: str = Field(default="", description="The server's public host key, OpenSSH format, pinned.")
    base_dir: str = "/"
    # rest
    base_url: str = ""
    token_encrypted: str | None = None
    created_at: datetime
    created_by: str


class NotifyOn(StrEnum):
    """A run's final outcome a rule can notify on (`recovered`: the first success after failures)."""

    FAILED = "failed"
    PARTIAL = "partial"
    SUCCEEDED = "succeeded"
    RECOVERED = "recovered"
    STOPPED = "stopped"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # nothing to import (an empty file with `on_empty: skip`): a feed gone quiet


class NotificationRule(BaseModel):
    """On a job or a group: which final outcomes notify, and which channels (`/notification-channels`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on: tuple[NotifyOn, ...] = Field(min_length=1, max_length=6)
    # Bounded like the ids in paths: a number the database cannot store is a 422, not a server error.
    channels: tuple[Annotated[int, Field(ge=1, le=2**62)], ...] = Field(
        min_length=1, max_length=20, description="Notification channel ids."
    )


class ChannelKind(StrEnum):
    SMTP = "smtp"
    WEBHOOK = "webhook"


class NotificationChannelRecord(Record):
    """E-mail through SMTP, or a signed webhook. Secrets are stored encrypted (`shared.secrets.SecretBox`)."""

    id: int = Field(alias="_id")
    kind: ChannelKind
    name: str
    # smtp
    host: str = ""
    port: int = 587
    starttls: bool = True
    username: str = ""
    password_encrypted: str | None = None
    from_address: str = ""
    to: tuple[str, ...] = ()
    # webhook
    url: str = ""
    secret_encrypted: str | None = Field(default=None, description="The Standard Webhooks signing secret.")
    created_at: datetime
    created_by: str


class PgpKeyKind(StrEnum):
    PUBLIC = "public"  # a partner's: to encrypt exports to, to verify what it signed
    PRIVATE = "private"  # Connect's own: to decrypt imports, to sign exports


class PgpKeyRecord(Record):
    """An OpenPGP key (`/keys`). The private key and its passphrase are stored encrypted
    (`shared.secrets.SecretBox`; the key as base64 of the bytes given, armoured or binary), never returned.
    The facts are gpg's reading at upload (`shared.pgp.KeyFacts`); each use checks the key again."""

    id: int = Field(alias="_id")
    name: str
    kind: PgpKeyKind
    fingerprint: str
    user_ids: tuple[str, ...]
    algorithm: str
    usage: tuple[str, ...]
    key_created: datetime
    expires: datetime | None = None
    public_key: str = Field(description="The armoured public part (of a private key too).")
    private_key_encrypted: str | None = None
    passphrase_encrypted: str | None = None
    created_at: datetime
    created_by: str
