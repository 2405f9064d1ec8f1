"""Job specifications as they travel between services (the catalog validates them on input)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.contracts.envelope import Frozen


class JobType(StrEnum):
    IMPORT = "import"
    EXPORT = "export"


class FieldType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    EMAIL = "email"
    PHONE = "phone"


class CsvFormat(Frozen):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    header: bool = True
    encoding: str = "utf-8"


class SftpSource(Frozen):
    kind: Literal["sftp"] = "sftp"
    connection_id: int = Field(ge=1)
    path: str = Field(min_length=1, max_length=1024, description="File path relative to the base directory.")


class FieldMapping(Frozen):
    column: str = Field(min_length=1, max_length=128, description="Column name in the file's header.")
    field: str = Field(min_length=1, max_length=128, description="Field of the target table.")


class TableField(Frozen):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    type: FieldType = FieldType.STRING
    required: bool = False
    max_length: int | None = Field(default=None, ge=1, le=65535)


class TableTarget(Frozen):
    table: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    mode: Literal["merge"] = "merge"


class ImportSpec(Frozen):
    source: SftpSource
    format: CsvFormat = CsvFormat()
    mapping: tuple[FieldMapping, ...] = Field(min_length=1)
    target: TableTarget


class JobSnapshot(Frozen):
    """The job as it was when a run was requested: a run works on this, whatever edits follow."""

    job_id: int = Field(ge=1)
    name: str
    job_type: JobType
    version: int = Field(default=1, ge=1)
    spec: ImportSpec
