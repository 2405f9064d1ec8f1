"""An import's guards and target rules, decided from numbers and definitions (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.executor.domain.guards import (
    count_file_check,
    is_overwrite,
    needs_validation_pass,
    reject_guard,
    shrink_guard,
)
from services.executor.domain.targets import mappable_fields, mapped_fields, require_kind
from services.executor.errors import GuardFailed
from shared.catalog_records import LIST_SYSTEM_FIELDS, TableKind, TableRecord
from shared.contracts.jobs import (
    CustomTableTarget,
    ImportGuards,
    ImportSpec,
    ListTarget,
    ProfileExtensionTarget,
    SftpSource,
    TableField,
)
from shared.errors import PermanentError
from tests.unit.factories import import_spec


def spec(*, count_file: bool = False, mode: str = "merge", **guards: float) -> ImportSpec:
    return import_spec().model_copy(update={
        "source": SftpSource(connection_id=1, path="in/people.csv", count_file=count_file),
        "target": CustomTableTarget(table="people", mode=mode),  # type: ignore[arg-type]
        "guards": ImportGuards(**guards),
    })  # fmt: skip


def table(kind: TableKind, *names: str) -> TableRecord:
    fields = tuple(TableField(name=n) for n in names)
    return TableRecord(name="t", kind=kind, fields=fields, created_at=datetime.now(UTC), created_by="test")


def test_the_reject_guard_passes_at_its_limit_and_fails_above_it() -> None:
    at = reject_guard(1, 4, 25)
    assert (at.guard, at.passed, at.percent) == ("max_reject_percent", True, 25.0)
    assert at.summary == "guard max_reject_percent passed: 1 of 4 records rejected (25.0 %, limit 25 %)"
    at.enforce()
    above = reject_guard(2, 4, 25)
    assert not above.passed
    assert above.summary == "guard max_reject_percent failed: 2 of 4 records rejected (50.0 %, limit 25 %)"
    with pytest.raises(
        GuardFailed, match=r"^50\.0 % of the records are rejected, more than the limit of 25 %$"
    ):
        above.enforce()


def test_the_reject_guard_of_an_empty_file_passes() -> None:
    assert reject_guard(0, 0, 0).passed


def test_the_shrink_guard_weighs_how_much_smaller_the_new_contents_are() -> None:
    assert shrink_guard("people", 10, 20, 0).passed  # a table that grows does not shrink
    half = shrink_guard("people", 10, 5, 50)
    assert (half.guard, half.passed, half.percent) == ("max_shrink_percent", True, 50.0)
    assert half.summary == "guard max_shrink_percent passed: 10 → 5 rows (50.0 % smaller, limit 50 %)"
    too_much = shrink_guard("people", 10, 4, 50)
    assert too_much.summary.startswith("guard max_shrink_percent failed: 10 → 4 rows")
    with pytest.raises(GuardFailed) as failed:
        too_much.enforce()
    assert failed.value.message == (
        "the overwrite would shrink people by 60.0 % (10 → 4 rows), more than the limit of 50 %"
    )


def test_a_count_file_must_say_what_the_file_holds() -> None:
    assert count_file_check("r.csv", 2, 2) == "count file of r.csv matches: 2 records"
    with pytest.raises(GuardFailed) as failed:
        count_file_check("r.csv", 3, 2)
    assert failed.value.message == "count file of r.csv says 3 records, the file holds 2"


def test_a_validation_pass_runs_for_count_files_and_the_reject_guard_but_not_for_an_overwrite() -> None:
    assert not needs_validation_pass(spec())
    assert needs_validation_pass(spec(count_file=True))
    assert needs_validation_pass(spec(max_reject_percent=10))
    assert not needs_validation_pass(spec(max_shrink_percent=10))  # decided at the swap
    assert not needs_validation_pass(spec(mode="overwrite", count_file=True, max_reject_percent=10))
    assert is_overwrite(spec(mode="overwrite"))
    assert not is_overwrite(spec(mode="append"))
    assert not is_overwrite(
        spec().model_copy(update={"target": ListTarget(table="t", match_columns=("RIID_",))})
    )


def test_a_target_table_must_be_of_the_kind_the_job_names() -> None:
    require_kind(table(TableKind.CUSTOM, "a"), TableKind.CUSTOM)
    with pytest.raises(PermanentError) as refused:
        require_kind(table(TableKind.CUSTOM, "a"), TableKind.LIST)
    assert refused.value.message == "table t is a custom table, not a list table"


def test_a_mapping_may_name_a_lists_system_fields_and_an_extensions_match_column() -> None:
    custom = table(TableKind.CUSTOM, "a", "b")
    assert [f.name for f in mappable_fields(spec(), custom)] == ["a", "b"]
    plain_list = table(TableKind.LIST, "FIRST_NAME")
    names = [f.name for f in mappable_fields(spec(), plain_list)]
    assert names == [*(f.name for f in LIST_SYSTEM_FIELDS), "FIRST_NAME"]
    extension = spec().model_copy(
        update={"target": ProfileExtensionTarget(table="t", match_column="EMAIL_ADDRESS_")}
    )
    assert [f.name for f in mappable_fields(extension, table(TableKind.PROFILE_EXTENSION, "score"))] == [
        "score", "EMAIL_ADDRESS_",
    ]  # fmt: skip
    keeping = table(TableKind.PROFILE_EXTENSION, "EMAIL_ADDRESS_", "score")
    assert [f.name for f in mappable_fields(extension, keeping)] == ["EMAIL_ADDRESS_", "score"]
    assert mapped_fields(spec()) == ("email", "name")
