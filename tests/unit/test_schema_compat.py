"""The compatibility checker of public event schemas (tests/support/schema_compat.py), on pydantic models
changed the ways docs/events.md allows and forbids."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, create_model

from tests.support.schema_compat import breaking_changes


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"


class Counts(BaseModel):
    read: int = 0
    rejected: int = 0


class Data(BaseModel):
    run_id: str
    status: Status
    counts: Counts
    finished_at: datetime
    error: str | None = None
    members: tuple[str, ...] = ()


class Event(BaseModel):
    type: Literal["x.finished.v1"] = "x.finished.v1"
    data: Data


OLD = Event.model_json_schema()


def changed(**fields: Any) -> dict[str, Any]:
    """The schema of `Event` whose `data` has these fields of these types (None: the field removed);
    a field keeps its default, a new one defaults to None."""
    definitions: dict[str, Any] = {}
    for name, info in Data.model_fields.items():
        annotation = fields.get(name, info.annotation)
        if annotation is not None:
            definitions[name] = (annotation, ... if info.is_required() else info.default)
    for name, annotation in fields.items():
        if name not in Data.model_fields:
            definitions[name] = (annotation, None)
    new_data = create_model("Data", **definitions)
    event = create_model("Event", type=(Literal["x.finished.v1"], "x.finished.v1"), data=(new_data, ...))
    return event.model_json_schema()


def test_the_same_schema_is_compatible() -> None:
    assert breaking_changes(OLD, Event.model_json_schema()) == []


def test_an_added_optional_field_passes() -> None:
    class NewData(Data):
        retries: int = 0
        note: str | None = None

    class NewEvent(Event):
        data: NewData

    assert breaking_changes(OLD, NewEvent.model_json_schema()) == []


def test_an_added_optional_field_in_a_nested_model_passes() -> None:
    class NewCounts(Counts):
        skipped: int = 0

    class NewData(Data):
        counts: NewCounts

    class NewEvent(Event):
        data: NewData

    assert breaking_changes(OLD, NewEvent.model_json_schema()) == []


def test_a_removed_field_fails() -> None:
    problems = breaking_changes(OLD, changed(error=None))

    assert problems == ["data.error is removed (or renamed)"]


def test_a_renamed_field_fails() -> None:
    schema = changed(error=None, error_message=str | None)

    assert "data.error is removed (or renamed)" in breaking_changes(OLD, schema)


def test_a_type_change_fails() -> None:
    assert breaking_changes(OLD, changed(run_id=int)) == ["data.run_id changes type: string → integer"]
    assert breaking_changes(OLD, changed(finished_at=str))[0].startswith("data.finished_at changes type")
    assert breaking_changes(OLD, changed(members=tuple[int, ...]))[0].startswith("data.members[] changes")


def test_a_field_that_may_now_be_null_fails() -> None:
    assert breaking_changes(OLD, changed(run_id=str | None))[0].startswith("data.run_id changes type")


def test_a_new_required_field_fails() -> None:
    class NewData(Data):
        attempt: int

    class NewEvent(Event):
        data: NewData

    assert breaking_changes(OLD, NewEvent.model_json_schema()) == ["data.attempt is new and required"]


def test_an_optional_field_that_becomes_required_fails() -> None:
    class NewData(Data):
        error: str | None  # no default any more

    class NewEvent(Event):
        data: NewData

    assert breaking_changes(OLD, NewEvent.model_json_schema()) == ["data.error becomes required"]


def test_changed_enum_values_fail() -> None:
    class MoreStatus(StrEnum):
        OK = "ok"
        FAILED = "failed"
        SKIPPED = "skipped"

    problems = breaking_changes(OLD, changed(status=MoreStatus))

    assert problems == ["data.status changes its values: ['ok', 'failed'] → ['ok', 'failed', 'skipped']"]


def test_a_new_version_constant_fails_within_the_snapshot_of_the_old_one() -> None:
    class NewEvent(Event):
        type: Literal["x.finished.v2"] = "x.finished.v2"  # type: ignore[assignment]

    assert breaking_changes(OLD, NewEvent.model_json_schema())[0].startswith("type changes type")
