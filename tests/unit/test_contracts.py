"""Message contracts: JSON round trip, immutability, forward compatibility and the schema snapshot."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts import ALL_MESSAGES, Envelope, RunJobReply, StopRun
from shared.contracts.runs import RunFinishedData, StopRunData
from tests.unit.factories import T0, run_finished, sample_message

SNAPSHOT = Path(__file__).parent / "snapshots" / "contracts.schema.json"

MESSAGE_IDS = [cls.__name__ for cls in ALL_MESSAGES]


def type_of(cls: type[Envelope]) -> str:
    default = cls.model_fields["type"].default
    assert isinstance(default, str)
    return default


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_message_round_trips_through_json(cls: type[Envelope]) -> None:
    message = sample_message(cls)

    again = cls.model_validate_json(message.model_dump_json())

    assert again == message
    assert type(again) is cls


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_message_and_its_payload_are_frozen(cls: type[Envelope]) -> None:
    message = sample_message(cls)
    data: Any = message.data  # type: ignore[attr-defined]
    first_data_field = next(iter(type(data).model_fields))

    with pytest.raises(ValidationError):
        message.source = "connect/other"
    with pytest.raises(ValidationError):
        setattr(data, first_data_field, getattr(data, first_data_field))
    assert message.source != "connect/other"


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_message_ignores_unknown_fields_added_later_in_the_same_version(cls: type[Envelope]) -> None:
    message = sample_message(cls)
    document = json.loads(message.model_dump_json())
    document["added_in_a_later_release"] = {"any": "thing"}
    document["data"]["also_new"] = [1, 2, 3]

    parsed = cls.model_validate_json(json.dumps(document))

    assert parsed == message
    assert "added_in_a_later_release" not in parsed.model_dump()
    assert "also_new" not in parsed.model_dump()["data"]


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_message_type_is_a_versioned_connect_type(cls: type[Envelope]) -> None:
    message_type = type_of(cls)

    assert message_type.startswith("connect.")
    assert message_type.endswith(".v1")
    assert sample_message(cls).type == message_type


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=MESSAGE_IDS)
def test_message_refuses_another_type(cls: type[Envelope]) -> None:
    document = json.loads(sample_message(cls).model_dump_json())
    document["type"] = type_of(cls).removesuffix(".v1") + ".v2"

    with pytest.raises(ValidationError):
        cls.model_validate(document)


def test_message_types_are_unique() -> None:
    types = [type_of(cls) for cls in ALL_MESSAGES]

    assert len(set(types)) == len(types)


def test_envelope_defaults_give_a_unique_id_and_an_aware_time() -> None:
    before = datetime.now(UTC)
    first = StopRun(source="connect/catalog", data=StopRunData(run_id="1.1", requested_by="ops"))
    second = StopRun(source="connect/catalog", data=StopRunData(run_id="1.1", requested_by="ops"))
    after = datetime.now(UTC)

    assert first.id and second.id
    assert first.id != second.id
    assert first.time.tzinfo is not None
    assert first.time.utcoffset() == timedelta(0)
    assert before <= first.time <= after
    assert first.specversion == "1.0"
    assert first.datacontenttype == "application/json"
    assert first.subject is None


@pytest.mark.parametrize("bad", ["0.1", "1", "a.b", "1.0", "01.2", "1.2.3", "", " 1.2"])
def test_run_id_pattern_rejects_malformed_ids(bad: str) -> None:
    with pytest.raises(ValidationError):
        StopRunData(run_id=bad, requested_by="ops")
    with pytest.raises(ValidationError):
        RunJobReply(accepted=True, run_id=bad)
    with pytest.raises(ValidationError):
        RunFinishedData.model_validate({**run_finished().data.model_dump(), "run_id": bad})


@pytest.mark.parametrize("good", ["1.1", "7.12", "123456.789"])
def test_run_id_pattern_accepts_job_and_run_numbers(good: str) -> None:
    assert StopRunData(run_id=good, requested_by="ops").run_id == good
    assert RunJobReply(accepted=True, run_id=good).run_id == good


def test_refusal_reply_carries_no_run_id() -> None:
    reply = RunJobReply(accepted=False, reason="job 7 is running")

    assert reply.run_id is None
    assert RunJobReply.model_validate_json(reply.model_dump_json()) == reply


def test_finished_times_keep_their_timezone_through_json() -> None:
    message = run_finished()

    again = type(message).model_validate_json(message.model_dump_json())

    assert again.data.started_at == T0
    assert again.data.started_at.utcoffset() == timedelta(0)


def current_schemas() -> dict[str, Any]:
    schemas = {cls.__name__: cls.model_json_schema() for cls in ALL_MESSAGES}
    return json.loads(json.dumps(schemas))  # tuples become lists, as in the file


def test_schemas_match_the_committed_snapshot() -> None:
    schemas = current_schemas()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(schemas, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    committed = json.loads(SNAPSHOT.read_text(encoding="utf-8"))

    assert committed == schemas, (
        "a message schema changed; if this is intended (fields only added within a version), "
        "rerun with UPDATE_SNAPSHOTS=1 and commit the new snapshot"
    )
