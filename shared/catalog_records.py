"""Documents the catalog stores and other services read as a read model (never write).

The executor reads connections (to reach SFTP) and table definitions (to map and write records).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.jobs import TableField


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TableKind(StrEnum):
    LIST = "list"
    PROFILE_EXTENSION = "profile_extension"
    CUSTOM = "custom"


class TableRecord(Record):
    """A table definition; its data lives in the audience database, collection `table_<name>`."""

    name: str
    kind: Literal[TableKind.CUSTOM] = TableKind.CUSTOM
    primary_key: tuple[str, ...] = Field(min_length=1, max_length=2)
    fields: tuple[TableField, ...]
    created_at: datetime
    created_by: str

    @property
    def collection(self) -> str:
        return table_collection(self.name)

    def field(self, name: str) -> TableField | None:
        return next((f for f in self.fields if f.name == name), None)


def table_collection(table_name: str) -> str:
    return f"table_{table_name}"


class ConnectionRecord(Record):
    """An SFTP endpoint. Secrets are stored encrypted (`shared.secrets.SecretBox`)."""

    id: int = Field(alias="_id")
    name: str
    host: str
    port: int
    username: str
    password_encrypted: str | None = None
    private_key_encrypted: str | None = None
    host_key: str = Field(description="The server's public host key, OpenSSH format, pinned by the user.")
    base_dir: str = "/"
    created_at: datetime
    created_by: str
