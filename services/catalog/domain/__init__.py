"""Catalog rules, free of I/O: who may do what, and what makes tables, jobs and groups valid."""

from services.catalog.domain.auth import (
    FailureLimiter,
    Role,
    StoredToken,
    TokenCache,
    hash_token,
    last_used_is_stale,
    require_role,
)
from services.catalog.domain.connections import validate_sftp_connection
from services.catalog.domain.groups import StoredGroup, check_group_run_now, check_members
from services.catalog.domain.jobs import (
    JobQuery,
    StoredJob,
    check_copy,
    check_dry_run,
    check_run_now,
    require_confirmation,
    unknown_keys,
    validate_export,
    validate_import,
)
from services.catalog.domain.schedules import check_instants
from services.catalog.domain.tables import table_fields, validate_new_table, validate_table

__all__ = [
    "FailureLimiter",
    "JobQuery",
    "Role",
    "StoredGroup",
    "StoredJob",
    "StoredToken",
    "TokenCache",
    "check_copy",
    "check_dry_run",
    "check_group_run_now",
    "check_instants",
    "check_members",
    "check_run_now",
    "hash_token",
    "last_used_is_stale",
    "require_confirmation",
    "require_role",
    "table_fields",
    "unknown_keys",
    "validate_export",
    "validate_import",
    "validate_new_table",
    "validate_sftp_connection",
    "validate_table",
]
