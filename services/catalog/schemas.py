"""Request and response bodies of the REST API (responses never carry secrets)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from shared.catalog_records import TableKind
from shared.contracts.jobs import ImportSpec, JobType, TableField
from shared.contracts.runs import RunCounts, RunStatus, Trigger

T = TypeVar("T")

NAME = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ConnectionCreate(Request):
    name: str = NAME
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=100)
    password: SecretStr | None = None
    private_key: SecretStr | None = Field(default=None, description="OpenSSH private key (PEM).")
    host_key: str = Field(
        min_length=20,
        max_length=10_000,
        description="The server's public host key, e.g. `ssh-ed25519 AAAA…`.",
    )
    base_dir: str = Field(default="/", min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _one_credential(self) -> ConnectionCreate:
        if self.password is None and self.private_key is None:
            raise ValueError("give a password or a private_key")
        return self


class ConnectionView(Response):
    id: int
    name: str
    host: str
    port: int
    username: str
    auth: Literal["password", "private_key"]
    host_key: str
    base_dir: str
    created_at: datetime
    created_by: str


class TableCreate(Request):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    kind: Literal[TableKind.CUSTOM] = TableKind.CUSTOM
    primary_key: list[str] = Field(min_length=1, max_length=2)
    fields: list[TableField] = Field(min_length=1, max_length=500)


class TableView(Response):
    name: str
    kind: TableKind
    primary_key: list[str]
    fields: list[TableField]
    created_at: datetime
    created_by: str


class JobCreate(Request):
    name: str = NAME
    spec: ImportSpec
    active: bool = True


class JobView(Response):
    id: int = Field(description="Job ID: auto-assigned.")
    name: str
    job_type: JobType
    group: str | None = Field(default=None, description="Name of the group the job is in, if any.")
    state: Literal["active", "inactive"]
    created_at: datetime = Field(description="Created on.")
    created_by: str = Field(description="By: the principal who created the job.")
    schedule_type: Literal["one_time", "recurring", "on_demand", "on_event"] = "on_demand"
    next_run: datetime | None = Field(default=None, description="Blank for non-recurring jobs.")
    previous_run: datetime | None = Field(default=None, description="Blank until the job has run.")
    expiration_date: datetime | None = None
    version: int
    spec: ImportSpec


class RunAccepted(Response):
    run_id: str = Field(description="`JobID.RunID` of the new run.", examples=["12.3"])


class RunView(Response):
    run_id: str
    job_id: int
    job_name: str | None = None
    job_type: JobType | None = None
    trigger: Trigger | None = None
    status: RunStatus
    start_time: datetime | None = None
    duration_seconds: float | None = None
    counts: RunCounts = RunCounts()
    error: str | None = None
    rejects_file: str | None = None
    executor: str | None = None
    last_log_seq: int | None = Field(
        default=None, description="Number of the run's last log line, once finished."
    )


class RunLogLine(Response):
    seq: int
    at: datetime
    level: str
    message: str
    fields: dict[str, str | int | float | bool | None] = {}


class RunLogPage(Response):
    run_id: str
    lines: list[RunLogLine]
    missing: list[tuple[int, int]] = Field(description="Gaps in the numbering: log lines missing.")


class Page(Response, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
