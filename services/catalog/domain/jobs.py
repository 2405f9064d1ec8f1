"""Rules of jobs: what a valid import or export is, and when run now, copy, delete and stop are allowed."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.catalog.domain.partner_files import validate_partner_files
from services.catalog.errors import ConfirmationRequired, RunRefused
from shared.catalog_records import (
    LIST_MATCH_COLUMNS,
    LIST_SYSTEM_FIELDS,
    ConnectionKind,
    ConnectionRecord,
    NotificationRule,
    TableKind,
    TableRecord,
)
from shared.contracts.jobs import (
    CustomTableTarget,
    ExportSpec,
    FieldType,
    ImportSpec,
    JobSnapshot,
    JobSpec,
    JobType,
    ListExportSource,
    ListTarget,
    OnDemandSchedule,
    PartnerFeedSource,
    ProfileExtensionTarget,
    Schedule,
    SftpDestination,
    SftpSource,
    TableField,
    is_expired,
)
from shared.errors import Conflict, Problems, ValidationFailed
from shared.paths import resolve_inside

TEMPLATE_FIELDS = frozenset({"date", "time", "run_id", "job_id"})
TARGET_KINDS = {ListTarget: TableKind.LIST, ProfileExtensionTarget: TableKind.PROFILE_EXTENSION}


class StoredJob(BaseModel):
    """A job as the catalog stores it (collection `jobs`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: int = Field(alias="_id")
    name: str
    job_type: JobType
    active: bool
    spec: JobSpec
    schedule: Schedule = OnDemandSchedule()
    expires_at: datetime | None = None
    notifications: tuple[NotificationRule, ...] = ()
    group_id: int | None = None
    version: int = 1
    created_at: datetime
    created_by: str
    updated_at: datetime | None = None
    updated_by: str | None = None

    @property
    def is_partner_feed(self) -> bool:
        return isinstance(self.spec, ImportSpec) and self.spec.is_partner_feed

    def snapshot(self) -> JobSnapshot:
        return JobSnapshot(
            job_id=self.id,
            name=self.name,
            job_type=self.job_type,
            version=self.version,
            spec=self.spec,
            schedule=self.schedule,
            expires_at=self.expires_at,
            group_id=self.group_id,
            notifies=bool(self.notifications),
        )


@dataclass(frozen=True)
class JobQuery:
    """The All jobs tab's filters and order, as the API takes them."""

    name: str | None = None  # a substring of the name, any case
    job_type: JobType | None = None
    state: Literal["active", "inactive"] | None = None
    group_id: int | None = None
    sort: str = "id"  # a field of `StoredJob`, "-" first for descending


# --- actions --------------------------------------------------------------------------------------


def check_run_now(job: StoredJob, now: datetime) -> None:
    if job.is_partner_feed:
        raise RunRefused("Run now is not available for partner-feed (Omniture) jobs")
    if not job.active:
        raise RunRefused(f"job {job.id} is inactive; activate it to run it")
    if is_expired(job.expires_at, now):
        raise RunRefused(f"job {job.id} expired on {job.expires_at:%Y-%m-%d %H:%M %Z}")


def check_dry_run(job: StoredJob, now: datetime) -> None:
    """A dry run reads an import's source and writes nothing; an inactive job may be tried before it is
    activated. Exports have no dry run (their reading is their whole work: run them, or preview the rows)."""
    if job.job_type is not JobType.IMPORT:
        raise ValidationFailed("dry run is for import jobs", field="job_id")
    if job.is_partner_feed:
        raise RunRefused("a dry run is not available for partner-feed (Omniture) jobs")
    if is_expired(job.expires_at, now):
        raise RunRefused(f"job {job.id} expired on {job.expires_at:%Y-%m-%d %H:%M %Z}")


def check_copy(job: StoredJob) -> None:
    if job.is_partner_feed:
        raise Conflict("partner-integration jobs cannot be copied")
    if job.active:
        raise Conflict("only an inactive job can be copied; deactivate it first")


def require_confirmation(confirm: bool, action: str) -> None:
    if not confirm:
        raise ConfirmationRequired(
            f"{action} needs confirmation: repeat the request with confirm=true", field="confirm"
        )


def unknown_keys(raw: object, model: object, path: str = "") -> list[str]:
    """Keys of the raw input that the validated model does not have (messages ignore them; users must not)."""
    if isinstance(model, BaseModel) and isinstance(raw, Mapping):
        found: list[str] = []
        for key, value in raw.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in type(model).model_fields:
                found.append(where)
            else:
                found += unknown_keys(value, getattr(model, str(key)), where)
        return found
    if isinstance(model, tuple | list) and isinstance(raw, list):
        return [
            k
            for i, (r, m) in enumerate(zip(raw, model, strict=False))
            for k in unknown_keys(r, m, f"{path}[{i}]")
        ]
    return []


# --- imports --------------------------------------------------------------------------------------


def import_source_path(spec: ImportSpec) -> str:
    source = spec.source
    return source.manifest_path if isinstance(source, PartnerFeedSource) else source.path


def validate_import(spec: ImportSpec, table: TableRecord, connection: ConnectionRecord) -> None:
    """An import job must map onto its table and read inside its connection's base directory."""
    problems = Problems()  # every rule is checked, so one answer names all that are broken
    problems.check(lambda: _require_connection(connection, ConnectionKind.SFTP, "spec.source.connection_id"))
    problems.check(lambda: _check_source_path(spec, connection))
    if isinstance(spec.source, SftpSource):
        source = spec.source
        problems.check(lambda: validate_partner_files(source, connection))
    problems.check(lambda: _check_target_kind(spec, table))
    _check_mapping(spec, table, problems)
    problems.check(lambda: _check_keys_mapped(spec, table))
    if spec.guards.max_shrink_percent is not None and not _is_overwrite(spec):
        problems.add("max_shrink_percent applies to overwrite imports only", "spec.guards")
    problems.raise_any()


def _check_source_path(spec: ImportSpec, connection: ConnectionRecord) -> None:
    try:
        resolve_inside(connection.base_dir, import_source_path(spec))
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, field="spec.source.path") from exc


def _check_target_kind(spec: ImportSpec, table: TableRecord) -> None:
    expected = TARGET_KINDS.get(type(spec.target), TableKind.CUSTOM)
    if table.kind != expected:
        message = f"table {table.name} is a {table.kind.value} table, not a {expected.value} table"
        raise ValidationFailed(message, field="spec.target.table")
    if isinstance(spec.source, PartnerFeedSource) and not isinstance(spec.target, CustomTableTarget):
        raise ValidationFailed("a partner feed loads into a custom table", field="spec.target")


def _mapped_field(spec: ImportSpec, table: TableRecord, name: str) -> TableField | None:
    """A field of the target table; for a profile extension also its match column, a field of the parent
    list that finds the record (stored in the extension only when the extension defines it too)."""
    field = table.field(name)
    target = spec.target
    if field is None and isinstance(target, ProfileExtensionTarget) and name == target.match_column:
        field = next((f for f in LIST_SYSTEM_FIELDS if f.name == name), None)
    return field


def _check_mapping(spec: ImportSpec, table: TableRecord, problems: Problems) -> None:
    for i, mapping in enumerate(spec.mapping):
        field = _mapped_field(spec, table, mapping.field)
        if field is None:
            problems.add(
                f"field '{mapping.field}' is not a field of table {table.name}", f"spec.mapping[{i}].field"
            )
        elif mapping.date_format and field.type not in (FieldType.DATE, FieldType.TIMESTAMP):
            problems.add("date_format applies to date and timestamp fields", f"spec.mapping[{i}]")
    for what, values in (
        ("field", [m.field for m in spec.mapping]),
        ("column", [m.column for m in spec.mapping]),
    ):
        if len(set(values)) != len(values):
            problems.add(f"a {what} is mapped more than once", "spec.mapping")


def _check_keys_mapped(spec: ImportSpec, table: TableRecord) -> None:
    mapped = {m.field for m in spec.mapping}
    target = spec.target
    if isinstance(target, ListTarget):
        keys: tuple[str, ...] = target.match_columns
        if len(set(keys)) != len(keys):
            raise ValidationFailed("match columns must differ", field="spec.target.match_columns")
    elif isinstance(target, ProfileExtensionTarget):
        keys = (target.match_column,)
        if target.match_column not in LIST_MATCH_COLUMNS:
            raise ValidationFailed(
                "the match column must be an indexed list field", "spec.target.match_column"
            )
    else:
        keys = table.primary_key
    unmapped = [k for k in keys if k not in mapped]
    if unmapped and not isinstance(target, ProfileExtensionTarget):
        raise ValidationFailed(
            f"the mapping must fill the key field(s) {', '.join(unmapped)}", "spec.mapping"
        )
    if isinstance(target, ProfileExtensionTarget) and unmapped:
        raise ValidationFailed(f"map a column to {target.match_column} to find list records", "spec.mapping")


def _is_overwrite(spec: ImportSpec) -> bool:
    return isinstance(spec.target, CustomTableTarget) and spec.target.mode == "overwrite"


# --- exports --------------------------------------------------------------------------------------


def validate_export(
    spec: ExportSpec, table: TableRecord, extensions: Mapping[str, TableRecord], connection: ConnectionRecord
) -> None:
    """An export reads existing fields of its table (and its list's extensions) and writes inside base dir."""
    source = spec.source
    problems = Problems()  # the fields, filters and destination are all checked, each problem reported
    if isinstance(source, ListExportSource):
        if table.kind != TableKind.LIST:
            raise ValidationFailed(f"table {table.name} is not a list", field="spec.source.table")
        columns = _list_columns(source, table, extensions)
        for i, condition in enumerate(source.filter.conditions if source.filter else ()):
            if condition.field not in columns and not _extension_field(condition.field, table, extensions):
                problems.add(f"unknown field '{condition.field}'", f"spec.source.filter.conditions[{i}]")
    else:
        if table.kind == TableKind.LIST:
            raise ValidationFailed("export a list with a list source", field="spec.source.kind")
        columns = {f.name for f in table.fields}
    for i, name in enumerate(spec.fields):
        if name not in columns:
            problems.add(f"field '{name}' is not exported by this source", f"spec.fields[{i}]")
    problems.check(lambda: _check_destination(spec, connection))
    problems.raise_any()


def _list_columns(
    source: ListExportSource, table: TableRecord, extensions: Mapping[str, TableRecord]
) -> set[str]:
    columns = {f.name for f in table.fields}
    for i, joined in enumerate(source.extension_fields):
        extension = extensions.get(joined.table)
        if extension is None or extension.parent_list != table.name:
            raise ValidationFailed(
                f"{joined.table} is not an extension of {table.name}", f"spec.source.extension_fields[{i}]"
            )
        for name in joined.fields:
            if extension.field(name) is None:
                raise ValidationFailed(
                    f"{joined.table} has no field '{name}'", f"spec.source.extension_fields[{i}]"
                )
            columns.add(name)
    return columns


def _extension_field(name: str, table: TableRecord, extensions: Mapping[str, TableRecord]) -> bool:
    owner, _, field = name.partition(".")
    extension = extensions.get(owner)
    return (
        bool(field)
        and extension is not None
        and extension.parent_list == table.name
        and bool(extension.field(field))
    )


def _check_destination(spec: ExportSpec, connection: ConnectionRecord) -> None:
    destination = spec.destination
    if not isinstance(destination, SftpDestination):
        _require_connection(connection, ConnectionKind.REST, "spec.destination.connection_id")
        return
    _require_connection(connection, ConnectionKind.SFTP, "spec.destination.connection_id")
    names = {
        name for _, name, _, _ in string.Formatter().parse(destination.path_template) if name is not None
    }
    if names - TEMPLATE_FIELDS:
        unknown = ", ".join(sorted(names - TEMPLATE_FIELDS))
        raise ValidationFailed(
            f"unknown placeholder(s) {unknown}; use {{date}}, {{time}}, {{run_id}}, {{job_id}}",
            "spec.destination.path_template",
        )
    sample = re.sub(r"\{[a-z_]+\}", "x", destination.path_template)
    try:
        resolve_inside(connection.base_dir, sample)
    except ValidationFailed as exc:
        raise ValidationFailed(exc.message, field="spec.destination.path_template") from exc


def _require_connection(connection: ConnectionRecord, kind: ConnectionKind, field: str) -> None:
    if connection.kind != kind:
        raise ValidationFailed(
            f"connection {connection.name} is a {connection.kind.value} connection, not {kind.value}", field
        )
