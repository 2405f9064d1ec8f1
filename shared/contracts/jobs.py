"""Job specifications as they travel between services (the catalog validates them on input).

A job is an import or an export. Its specification is self-contained except for references to
connections (SFTP endpoints, REST endpoints) and tables, which live in the catalog.
"""

from __future__ import annotations

import codecs
from datetime import datetime, time
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, field_validator

from shared.contracts.durations import checked_max_duration
from shared.contracts.envelope import Frozen

TABLE_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
TRIGGER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_WAIT_MINUTES = 720  # if_missing: wait — half a day at most

MaxDuration = Annotated[
    str | None,
    Field(
        max_length=40,
        examples=["PT2H"],
        description=(
            "Run timeout, an ISO 8601 duration (> 0, up to 24 h): past it, counted from the run's first "
            "start, the run stops at its next safe point and ends failed with 'timed out after …'."
        ),
    ),
    AfterValidator(lambda text: None if text is None else checked_max_duration(text)),
]


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


class TableField(Frozen):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    type: FieldType = FieldType.STRING
    required: bool = False
    max_length: int | None = Field(default=None, ge=1, le=65535)


# --- schedules ------------------------------------------------------------------------------------


class _Unspread(Frozen):
    """Only recurring schedules spread their start times: 0 or left out elsewhere (never dumped)."""

    spread_minutes: int = Field(default=0, exclude=True, description="Recurring schedules only: 0.")

    @field_validator("spread_minutes")
    @classmethod
    def _only_recurring(cls, value: int) -> int:
        if value:
            raise ValueError("only a recurring schedule spreads its start times (leave it out or give 0)")
        return value


class OneTimeSchedule(_Unspread):
    type: Literal["one_time"] = "one_time"
    at: AwareDatetime


class CronRule(Frozen):
    kind: Literal["cron"] = "cron"
    expression: str = Field(min_length=9, max_length=120, examples=["0 2 * * *"])


class EveryRule(Frozen):
    kind: Literal["every"] = "every"
    minutes: int = Field(ge=1, le=10_080, description="Every N minutes (use 60·N for hours).")


class DailyRule(Frozen):
    kind: Literal["daily"] = "daily"
    at: time


class WeeklyRule(Frozen):
    kind: Literal["weekly"] = "weekly"
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = Field(
        min_length=1, max_length=7
    )
    at: time


class MonthlyRule(Frozen):
    kind: Literal["monthly"] = "monthly"
    day: int = Field(ge=1, le=31, description="Day of the month; short months run on their last day.")
    at: time


RecurrenceRule = Annotated[
    CronRule | EveryRule | DailyRule | WeeklyRule | MonthlyRule, Field(discriminator="kind")
]


class RecurringSchedule(Frozen):
    type: Literal["recurring"] = "recurring"
    rule: RecurrenceRule
    timezone: str = Field(default="UTC", max_length=64, examples=["Europe/Paris"])
    spread_minutes: int = Field(
        default=0,
        ge=0,
        le=59,
        description=(
            "Spread start times: each job or group fires at a stable offset (whole seconds, derived from "
            "its kind and id) inside this many minutes after each slot; shorter than the schedule's interval."
        ),
    )


class OnDemandSchedule(_Unspread):
    type: Literal["on_demand"] = "on_demand"


class OnEventSchedule(_Unspread):
    type: Literal["on_event"] = "on_event"
    trigger: str = Field(
        pattern=TRIGGER_NAME, description="Routing key on the public `connect.triggers` exchange."
    )


Schedule = Annotated[
    OneTimeSchedule | RecurringSchedule | OnDemandSchedule | OnEventSchedule, Field(discriminator="type")
]


# --- imports --------------------------------------------------------------------------------------


class CsvFormat(Frozen):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    header: bool = Field(default=True, description="False: columns are named by position, '1', '2', …")
    encoding: str = Field(default="utf-8", max_length=40)

    @field_validator("encoding")
    @classmethod
    def _known_text_encoding(cls, name: str) -> str:
        """A Python text codec name (`utf-8`, `latin-1`, `cp1252`, `utf-16` …), checked before any run."""
        message = f"unknown encoding '{name}'; give a text encoding such as utf-8 or latin-1"
        try:
            codec = codecs.lookup(name)
            if not getattr(codec, "_is_text_encoding", True):  # rot13, base64, zlib: not text encodings
                raise LookupError(name)
            codec.incrementaldecoder().decode(b"", final=True)  # 'undefined' refuses everything
        except (LookupError, UnicodeError) as exc:
            raise ValueError(message) from exc
        return name


KeyId = Annotated[int, Field(ge=1, le=2**62, description="A key of `/api/v1/keys`.")]


class SourcePgp(Frozen):
    """An encrypted source file (docs/pgp.md): decrypted with Connect's private key before it is read."""

    decrypt_with: KeyId = Field(description="A private key (kind private) the files are encrypted to.")
    verify_with: tuple[KeyId, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Partners' public keys: when given, a file not signed by one of them fails the run.",
    )


class DestinationPgp(Frozen):
    """The exported file encrypted (and signed) before it is uploaded (docs/pgp.md)."""

    encrypt_to: tuple[KeyId, ...] = Field(min_length=1, max_length=20, description="Recipients' keys.")
    sign_with: KeyId | None = Field(default=None, description="A private key to sign with.")
    armor: bool = Field(default=False, description="ASCII armour instead of binary OpenPGP.")


class SftpSource(Frozen):
    kind: Literal["sftp"] = "sftp"
    connection_id: int = Field(ge=1)
    path: str = Field(
        min_length=1, max_length=1024, description="Path or glob, relative to the base directory."
    )
    pick: Literal["newest", "all"] = Field(
        default="newest", description="With a glob: newest match or all in name order."
    )
    ready_file: Literal["none", "required", "wait"] = Field(
        default="none", description="A `<file>.ready` marker: ignore, fail when absent, or wait for it."
    )
    ready_wait_seconds: int = Field(default=600, ge=0, le=86_400)
    count_file: bool = Field(default=False, description="A `<file>.count` holds the record count to check.")
    compression: Literal["auto", "none", "gzip", "zip"] = "auto"
    # Files as partners deliver them (docs/partner-files.md); the catalog checks the combinations.
    if_missing: Literal["fail", "wait", "newest"] = Field(
        default="fail",
        description="No file at the (dated) path: fail; wait up to `wait_minutes` for it; or take the "
        "newest file matching the path with any date.",
    )
    wait_minutes: int = Field(default=60, ge=1, le=MAX_WAIT_MINUTES, description="With if_missing: wait.")
    on_empty: Literal["succeed", "skip", "fail"] = Field(
        default="succeed", description="A file without data rows: succeed (0 rows), end `skipped`, or fail."
    )
    max_age_hours: int | None = Field(
        default=None, ge=1, le=8784, description="A file last modified longer ago fails the run."
    )
    after_import: Literal["keep", "archive", "delete"] = Field(
        default="keep",
        description="After a succeeded or partial run: leave the file, move it (and its .ready/.count) "
        "into `archive_dir` with the run id in its name, or delete it.",
    )
    archive_dir: str | None = Field(
        default=None, min_length=1, max_length=1024, description="Required for after_import: archive."
    )
    pgp: SourcePgp | None = Field(default=None, description="The files are OpenPGP-encrypted.")

    def key_ids(self) -> set[int]:
        pgp = self.pgp
        return set() if pgp is None else {pgp.decrypt_with, *(pgp.verify_with or ())}


class PartnerFeedSource(Frozen):
    """An Adobe Analytics data-feed delivery (the guide's "Omniture" jobs): manifest + `.tsv.gz` files."""

    kind: Literal["adobe_analytics"] = "adobe_analytics"
    connection_id: int = Field(ge=1)
    manifest_path: str = Field(
        min_length=1, max_length=1024, description="Path or glob of the `.txt` manifest."
    )


ImportSource = Annotated[SftpSource | PartnerFeedSource, Field(discriminator="kind")]


class FieldMapping(Frozen):
    column: str = Field(min_length=1, max_length=128, description="Header name, or 1-based position.")
    field: str = Field(min_length=1, max_length=128, description="Field of the target table.")
    date_format: str | None = Field(default=None, max_length=64, description="strptime format for dates.")


MatchColumn = Literal["RIID_", "EMAIL_ADDRESS_", "CUSTOMER_ID_", "MOBILE_NUMBER_"]


class ListTarget(Frozen):
    kind: Literal["list"] = "list"
    table: str = Field(pattern=TABLE_NAME)
    match_columns: tuple[MatchColumn, ...] = Field(min_length=1, max_length=2)
    insert_on_no_match: bool = True
    update_on_match: Literal["replace_all", "no_update"] = "replace_all"


class ProfileExtensionTarget(Frozen):
    kind: Literal["profile_extension"] = "profile_extension"
    table: str = Field(pattern=TABLE_NAME)
    match_column: MatchColumn = Field(description="List field used to find the list record of each row.")


class CustomTableTarget(Frozen):
    kind: Literal["custom"] = "custom"
    table: str = Field(pattern=TABLE_NAME)
    mode: Literal["merge", "append", "overwrite"] = "merge"


ImportTarget = Annotated[ListTarget | ProfileExtensionTarget | CustomTableTarget, Field(discriminator="kind")]


class ImportGuards(Frozen):
    max_reject_percent: float | None = Field(default=None, ge=0, le=100)
    max_shrink_percent: float | None = Field(default=None, ge=0, le=100, description="Overwrite only.")


class ImportSpec(Frozen):
    kind: Literal["import"] = "import"
    source: ImportSource
    format: CsvFormat = CsvFormat()
    mapping: tuple[FieldMapping, ...] = Field(min_length=1, max_length=500)
    target: ImportTarget
    guards: ImportGuards = ImportGuards()
    max_duration: MaxDuration = None

    @property
    def is_partner_feed(self) -> bool:
        return isinstance(self.source, PartnerFeedSource)


# --- exports --------------------------------------------------------------------------------------


class Condition(Frozen):
    field: str = Field(
        min_length=1, max_length=128, description="A list field, or `TABLE.FIELD` of an extension."
    )
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists"]
    value: str | int | float | bool | list[str | int | float] | None = None


class Filter(Frozen):
    """An audience: records matching all (or any) of the conditions."""

    match: Literal["all", "any"] = "all"
    conditions: tuple[Condition, ...] = Field(min_length=1, max_length=50)


class ExtensionFields(Frozen):
    table: str = Field(pattern=TABLE_NAME)
    fields: tuple[str, ...] = Field(min_length=1)


class ListExportSource(Frozen):
    kind: Literal["list"] = "list"
    table: str = Field(pattern=TABLE_NAME)
    filter: Filter | None = None
    extension_fields: tuple[ExtensionFields, ...] = ()
    incremental: bool = Field(
        default=False, description="Only records changed since the last successful run."
    )


class TableExportSource(Frozen):
    kind: Literal["table"] = "table"
    table: str = Field(pattern=TABLE_NAME, description="A profile extension table or a custom table.")
    incremental: bool = False


ExportSource = Annotated[ListExportSource | TableExportSource, Field(discriminator="kind")]


class SftpDestination(Frozen):
    kind: Literal["sftp"] = "sftp"
    connection_id: int = Field(ge=1)
    path_template: str = Field(
        min_length=1, max_length=1024, examples=["out/contacts_{date}_{run_id}.csv"],
        description="Placeholders: {date} (YYYYMMDD), {time} (HHMMSS), {run_id}, {job_id}.",
    )  # fmt: skip
    ready_file: bool = False
    gzip: bool = False
    pgp: DestinationPgp | None = Field(default=None, description="Encrypt the file before the upload.")

    def key_ids(self) -> set[int]:
        pgp = self.pgp
        return set() if pgp is None else {*pgp.encrypt_to, *([pgp.sign_with] if pgp.sign_with else [])}


class RestDestination(Frozen):
    """Push to another marketing system in the Responsys merge-list-members style."""

    kind: Literal["rest"] = "rest"
    connection_id: int = Field(ge=1, description="A REST connection (base URL and token).")
    list_name: str = Field(min_length=1, max_length=100)
    match_column: MatchColumn = "EMAIL_ADDRESS_"
    batch_size: int = Field(default=200, ge=1, le=200)


ExportDestination = Annotated[SftpDestination | RestDestination, Field(discriminator="kind")]


class ExportSpec(Frozen):
    kind: Literal["export"] = "export"
    source: ExportSource
    format: CsvFormat = CsvFormat()
    fields: tuple[str, ...] = Field(default=(), description="Columns in order; empty: all fields.")
    destination: ExportDestination
    max_duration: MaxDuration = None


JobSpec = Annotated[ImportSpec | ExportSpec, Field(discriminator="kind")]


class JobSnapshot(Frozen):
    """The job as it was when a run was requested: a run works on this, whatever edits follow."""

    job_id: int = Field(ge=1)
    name: str
    job_type: JobType
    version: int = Field(default=1, ge=1)
    spec: JobSpec
    schedule: Schedule = OnDemandSchedule()
    expires_at: AwareDatetime | None = None
    group_id: int | None = None
    notifies: bool = Field(
        default=False, description="The job has notification rules: its runs' ends are looked up for them."
    )

    @property
    def is_partner_feed(self) -> bool:
        return isinstance(self.spec, ImportSpec) and self.spec.is_partner_feed


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now
