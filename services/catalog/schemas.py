"""Request and response bodies of the REST API (responses never carry secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, HttpUrl, SecretStr, Tag, model_validator

from shared.catalog_records import ConnectionKind, TableKind
from shared.contracts.jobs import TableField

T = TypeVar("T")

HOST = r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$"  # a DNS name, IPv4 or IPv6 address
NAME = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SftpConnectionCreate(Request):
    kind: Literal["sftp"] = "sftp"
    name: str = NAME
    host: str = Field(min_length=1, max_length=253, pattern=HOST)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=100)
    password: SecretStr | None = Field(default=None, max_length=1000)
    private_key: SecretStr | None = Field(default=None, max_length=20_000, description="OpenSSH private key.")
    host_key: str = Field(
        min_length=20,
        max_length=10_000,
        description="The server's public host key, e.g. `ssh-ed25519 AAAA…` (see POST /connections/host-key).",
    )
    base_dir: str = Field(default="/", min_length=1, max_length=1024, description="Paths stay inside it.")

    @model_validator(mode="after")
    def _one_credential(self) -> SftpConnectionCreate:
        if self.password is None and self.private_key is None:
            raise ValueError("give a password or a private_key")
        return self


class RestConnectionCreate(Request):
    """Another marketing system's REST API (export destination)."""

    kind: Literal["rest"]
    name: str = NAME
    base_url: HttpUrl = Field(description="e.g. `https://api.example.com/rest/api/v1.3`")
    token: SecretStr = Field(min_length=1, max_length=10_000)


def _connection_kind(value: Any) -> str:
    kind = value.get("kind", "sftp") if isinstance(value, dict) else getattr(value, "kind", "sftp")
    return str(kind)


ConnectionCreate = Annotated[
    Annotated[SftpConnectionCreate, Tag("sftp")] | Annotated[RestConnectionCreate, Tag("rest")],
    Discriminator(_connection_kind),
]


class ConnectionView(Response):
    id: int
    kind: ConnectionKind
    name: str
    host: str = ""
    port: int = 22
    username: str = ""
    auth: Literal["password", "private_key", "token"]
    host_key: str = ""
    base_dir: str = "/"
    base_url: str = ""
    created_at: datetime
    created_by: str


class HostKeyRequest(Request):
    host: str = Field(min_length=1, max_length=253, pattern=HOST)
    port: int = Field(default=22, ge=1, le=65535)


class HostKeyView(Response):
    host_key: str = Field(description="Pin this value as the connection's host_key.")
    fingerprint: str = Field(description="SHA256 fingerprint, as `ssh-keygen -l` shows it.")


class ConnectionTest(Response):
    ok: bool
    message: str
    fingerprint: str | None = None


class TableCreate(Request):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    kind: TableKind = TableKind.CUSTOM
    primary_key: list[str] = Field(default=[], max_length=2, description="Custom tables: one or two fields.")
    parent_list: str | None = Field(
        default=None, description="Profile extension tables: the list they extend."
    )
    fields: list[TableField] = Field(default=[], max_length=500, description="User fields.")


class TableView(Response):
    name: str
    kind: TableKind
    primary_key: list[str]
    parent_list: str | None = None
    fields: list[TableField]
    created_at: datetime
    created_by: str


class RunAccepted(Response):
    run_id: str = Field(description="`JobID.RunID` of the new run.", examples=["12.3"])


class Page(Response, Generic[T]):
    """One page of a list; `next` and `prev` (also in the `Link` header) keep the request's filters."""

    items: list[T]
    total: int = Field(description="Items matching the filters, on every page together.")
    offset: int
    limit: int = Field(description="At most this many items (the largest limit accepted is 500).")
    next: str | None = Field(description="The next page's relative URL; null on the last page.")
    prev: str | None = Field(description="The previous page's relative URL; null on the first page.")


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = Field(
        default=None, description="The field the problem is about (`spec.mapping[0].field`)."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody = Field(description="The first problem (the one `errors` starts with).")
    errors: list[ErrorBody] = Field(
        description="Every problem found: a 422 lists each invalid field, other errors have one entry."
    )
