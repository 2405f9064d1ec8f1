"""The guide's job rules, without broker or database: run now, copy, delete confirmation, validation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.catalog.domain import (
    StoredJob,
    check_copy,
    check_run_now,
    require_confirmation,
    table_fields,
    unknown_keys,
    validate_export,
    validate_import,
    validate_new_table,
)
from services.catalog.errors import RunRefused
from shared.catalog_records import (
    LIST_SYSTEM_FIELDS,
    ConnectionKind,
    ConnectionRecord,
    TableKind,
    TableRecord,
)
from shared.contracts.jobs import (
    CustomTableTarget,
    ExportSpec,
    FieldMapping,
    ImportGuards,
    ImportSpec,
    JobType,
    ListTarget,
    PartnerFeedSource,
    ProfileExtensionTarget,
    RestDestination,
    SftpSource,
    TableField,
)
from shared.errors import Conflict, PermanentError, ValidationFailed
from tests.unit.factories import T0, import_spec

SFTP = ConnectionRecord.model_validate(
    {
        "_id": 1,
        "name": "sftp",
        "host": "h",
        "username": "u",
        "host_key": "k",
        "base_dir": "/acme",
        "created_at": T0,
        "created_by": "a",
    }
)
REST = SFTP.model_copy(update={"id": 2, "kind": ConnectionKind.REST, "name": "rest"})
PEOPLE = TableRecord(
    name="people",
    kind=TableKind.LIST,
    fields=(*LIST_SYSTEM_FIELDS, TableField(name="city")),
    created_at=T0,
    created_by="a",
)
PREFS = TableRecord(
    name="prefs", kind=TableKind.PROFILE_EXTENSION, parent_list="people",
    fields=(LIST_SYSTEM_FIELDS[0], TableField(name="colour")), created_at=T0, created_by="a",
)  # fmt: skip
CUSTOM = TableRecord(
    name="people",
    primary_key=("email",),
    fields=(TableField(name="email"), TableField(name="name")),
    created_at=T0,
    created_by="a",
)


def stored(active: bool = True, spec: ImportSpec | None = None, **extra: object) -> StoredJob:
    return StoredJob.model_validate(
        {"_id": 5, "name": "job", "job_type": JobType.IMPORT, "active": active, "spec": spec or import_spec(),
         "created_at": T0, "created_by": "a", **extra}
    )  # fmt: skip


def partner_spec() -> ImportSpec:
    return import_spec().model_copy(
        update={"source": PartnerFeedSource(connection_id=1, manifest_path="feed/*.txt")}
    )


def test_run_now_is_refused_for_partner_feeds_inactive_and_expired_jobs() -> None:
    check_run_now(stored(), T0)
    with pytest.raises(RunRefused, match="partner-feed"):
        check_run_now(stored(spec=partner_spec()), T0)
    with pytest.raises(RunRefused, match="inactive"):
        check_run_now(stored(active=False), T0)
    with pytest.raises(RunRefused, match="expired"):
        check_run_now(stored(expires_at=T0 - timedelta(seconds=1)), T0)
    check_run_now(stored(expires_at=T0 + timedelta(seconds=1)), T0)


def test_copy_only_of_inactive_non_partner_jobs() -> None:
    check_copy(stored(active=False))
    with pytest.raises(Conflict, match="inactive"):
        check_copy(stored(active=True))
    with pytest.raises(Conflict, match="partner"):
        check_copy(stored(active=False, spec=partner_spec()))


def test_destructive_actions_need_confirmation() -> None:
    require_confirmation(True, "Delete")
    with pytest.raises(PermanentError) as refused:
        require_confirmation(False, "Delete")
    assert refused.value.field == "confirm" and "confirm=true" in refused.value.message


def test_unknown_keys_are_found_at_any_depth() -> None:
    spec = import_spec()
    raw = {
        "kind": "import",
        "source": {"kind": "sftp", "connection_id": 1, "path": "a", "colour": "red"},
        "mapping": [{"column": "Email", "field": "email"}, {"column": "Name", "field": "name", "x": 1}],
        "target": {"kind": "custom", "table": "people"},
        "extra": True,
    }
    assert unknown_keys(raw, spec, "spec") == ["spec.source.colour", "spec.mapping[1].x", "spec.extra"]
    assert unknown_keys(spec.model_dump(mode="json"), spec) == []


def test_snapshot_carries_what_a_run_needs() -> None:
    snapshot = stored(version=4).snapshot()
    assert (snapshot.job_id, snapshot.version, snapshot.spec) == (5, 4, import_spec())


def test_list_imports_need_their_match_columns_mapped() -> None:
    mapping = (FieldMapping(column="mail", field="EMAIL_ADDRESS_"), FieldMapping(column="city", field="city"))
    spec = ImportSpec(
        source=SftpSource(connection_id=1, path="p.csv"), mapping=mapping,
        target=ListTarget(table="people", match_columns=("EMAIL_ADDRESS_",)),
    )  # fmt: skip
    validate_import(spec, PEOPLE, SFTP)
    unmapped = spec.model_copy(update={"target": ListTarget(table="people", match_columns=("CUSTOMER_ID_",))})
    with pytest.raises(ValidationFailed, match="CUSTOMER_ID_"):
        validate_import(unmapped, PEOPLE, SFTP)
    with pytest.raises(ValidationFailed) as wrong_kind:
        validate_import(spec.model_copy(update={"target": CustomTableTarget(table="people")}), PEOPLE, SFTP)
    assert wrong_kind.value.field == "spec.target.table"


def test_extension_imports_find_list_records_through_a_match_column() -> None:
    spec = ImportSpec(
        source=SftpSource(connection_id=1, path="p.csv"),
        mapping=(FieldMapping(column="id", field="RIID_"), FieldMapping(column="colour", field="colour")),
        target=ProfileExtensionTarget(table="prefs", match_column="RIID_"),
    )
    validate_import(spec, PREFS, SFTP)
    needs_column = spec.model_copy(
        update={"target": ProfileExtensionTarget(table="prefs", match_column="EMAIL_ADDRESS_")}
    )
    with pytest.raises(ValidationFailed, match="EMAIL_ADDRESS_"):
        validate_import(needs_column, PREFS, SFTP)


def test_import_guards_and_connection_kind() -> None:
    shrink = import_spec().model_copy(update={"guards": ImportGuards(max_shrink_percent=10)})
    with pytest.raises(ValidationFailed, match="overwrite"):
        validate_import(shrink, CUSTOM, SFTP)
    overwrite = shrink.model_copy(update={"target": CustomTableTarget(table="people", mode="overwrite")})
    validate_import(overwrite, CUSTOM, SFTP)
    with pytest.raises(ValidationFailed, match="not sftp"):
        validate_import(import_spec(), CUSTOM, REST)


def test_every_broken_rule_of_a_job_is_reported_not_only_the_first() -> None:
    shrink = import_spec().model_copy(update={"guards": ImportGuards(max_shrink_percent=10)})
    with pytest.raises(ValidationFailed) as broken:
        validate_import(shrink, CUSTOM, REST)  # a REST connection, and a shrink guard on a merge
    assert [p.field for p in broken.value.problems] == ["spec.source.connection_id", "spec.guards"]
    assert broken.value.field == "spec.source.connection_id"  # the first, as `field` always was

    spec = export_spec().model_copy(update={"fields": ("city", "size", "shoe")})
    spec = spec.model_copy(
        update={"destination": spec.destination.model_copy(update={"path_template": "out/{user}.csv"})}
    )
    with pytest.raises(ValidationFailed) as export:
        validate_export(spec, PEOPLE, {}, SFTP)
    fields = [p.field for p in export.value.problems]
    assert fields == ["spec.fields[1]", "spec.fields[2]", "spec.destination.path_template"]


def export_spec(**source: object) -> ExportSpec:
    return ExportSpec.model_validate(
        {"source": {"kind": "list", "table": "people", **source},
         "destination": {"kind": "sftp", "connection_id": 1, "path_template": "out/{date}_{run_id}.csv"}}
    )  # fmt: skip


def test_exports_read_existing_list_and_extension_fields() -> None:
    joined = {"extension_fields": [{"table": "prefs", "fields": ["colour"]}]}
    validate_export(
        export_spec(**joined).model_copy(update={"fields": ("city", "colour")}),
        PEOPLE,
        {"prefs": PREFS},
        SFTP,
    )
    audience = export_spec(filter={"conditions": [{"field": "prefs.colour", "op": "eq", "value": "red"}]})
    validate_export(audience, PEOPLE, {"prefs": PREFS}, SFTP)
    with pytest.raises(ValidationFailed) as unknown:
        validate_export(
            export_spec(filter={"conditions": [{"field": "prefs.size", "op": "exists"}]}),
            PEOPLE,
            {"prefs": PREFS},
            SFTP,
        )
    assert unknown.value.field == "spec.source.filter.conditions[0]"
    with pytest.raises(ValidationFailed, match="not an extension"):
        validate_export(export_spec(extension_fields=[{"table": "other", "fields": ["x"]}]), PEOPLE, {}, SFTP)
    rest = export_spec().model_copy(
        update={"destination": RestDestination(connection_id=1, list_name="people")}
    )
    with pytest.raises(ValidationFailed, match="not rest"):
        validate_export(rest, PEOPLE, {}, SFTP)
    validate_export(rest, PEOPLE, {}, REST)


def test_export_templates_know_their_placeholders_and_stay_inside_base_dir() -> None:
    for template, field_message in (
        ("out/{user}.csv", "unknown placeholder"),
        ("../{date}.csv", "base directory"),
    ):
        spec = export_spec()
        spec = spec.model_copy(
            update={"destination": spec.destination.model_copy(update={"path_template": template})}
        )
        with pytest.raises(ValidationFailed, match=field_message):
            validate_export(spec, PEOPLE, {}, SFTP)


def test_new_tables() -> None:
    assert next(f.name for f in table_fields(TableKind.LIST, [TableField(name="city")])) == "RIID_"
    with pytest.raises(ValidationFailed, match="system fields"):
        table_fields(TableKind.LIST, [TableField(name="EMAIL_ADDRESS_")])
    with pytest.raises(ValidationFailed, match="primary key"):
        validate_new_table("t", TableKind.CUSTOM, (), [TableField(name="a")], None)
    with pytest.raises(ValidationFailed, match="RIID_"):
        validate_new_table("t", TableKind.LIST, ("a",), [TableField(name="a")], None)
    with pytest.raises(ValidationFailed, match="existing list"):
        validate_new_table("t", TableKind.PROFILE_EXTENSION, (), [TableField(name="a")], CUSTOM)
    with pytest.raises(ValidationFailed) as broken:  # every rule it breaks, in one answer
        validate_new_table("t", TableKind.CUSTOM, (), [TableField(name="a"), TableField(name="a")], PEOPLE)
    assert [p.field for p in broken.value.problems] == ["fields", "primary_key", "parent_list"]
