"""Rules of an SFTP import's partner-file options (docs/partner-files.md): date tokens that parse, a
`newest` fallback that can glob, an archive directory inside the connection's base directory."""

from __future__ import annotations

from datetime import datetime

from shared.catalog_records import ConnectionRecord
from shared.contracts.jobs import ImportSpec, JobSpec, RecurringSchedule, Schedule, SftpSource
from shared.datepaths import parse_path, run_date
from shared.errors import ValidationFailed
from shared.paths import resolve_inside

GLOB_CHARS = frozenset("*?[")


def validate_partner_files(source: SftpSource, connection: ConnectionRecord) -> None:
    path = parse_path(source.path, field="spec.source.path")
    if source.if_missing == "newest":
        if not path.has_tokens:
            raise ValidationFailed(
                "if_missing: newest needs a date token in spec.source.path (the newest file of any date)",
                field="spec.source.if_missing",
            )
        if not path.tokens_in_name_only():
            raise ValidationFailed(
                "if_missing: newest needs the date tokens in the file name, not in a directory",
                field="spec.source.if_missing",
            )
    _check_archive(source, connection)


def _check_archive(source: SftpSource, connection: ConnectionRecord) -> None:
    field = "spec.source.archive_dir"
    if source.after_import != "archive":
        if source.archive_dir is not None:
            raise ValidationFailed("archive_dir applies to after_import: archive only", field=field)
        return
    if source.archive_dir is None:
        raise ValidationFailed("after_import: archive needs archive_dir", field=field)
    if GLOB_CHARS & set(source.archive_dir) or "{" in source.archive_dir or "}" in source.archive_dir:
        raise ValidationFailed("archive_dir is a directory: no wildcards or tokens", field=field)
    try:
        resolve_inside(connection.base_dir, source.archive_dir)
    except ValidationFailed as exc:
        raise ValidationFailed(f"archive_dir: {exc.message}", field=field) from exc


def dated_source_path(spec: JobSpec, schedule: Schedule, moment: datetime) -> str | None:
    """The path an SFTP import with date tokens reads when it fires at `moment`; None without tokens."""
    source = spec.source if isinstance(spec, ImportSpec) else None
    if not isinstance(source, SftpSource):
        return None
    try:
        path = parse_path(source.path)
    except ValidationFailed:  # stored before date tokens existed: its braces are literal
        return None
    if not path.has_tokens:
        return None
    zone = schedule.timezone if isinstance(schedule, RecurringSchedule) else "UTC"
    return path.render(run_date(moment, zone))
