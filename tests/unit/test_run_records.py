"""One model of the run record and the group-run record (`shared.run_records`): the names the logsink
writes by are the fields the catalog reads, and every record the logsink's writes can leave behind, in
any order of its events, reads back whole."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from services.logsink.domain import Planned, fresh_events, plan, run_writes
from shared.contracts import Envelope, GroupRunFinished, GroupRunStarted
from shared.contracts.runs import RunCounts, RunProgressData, RunStatus
from shared.run_records import (
    IN_FLIGHT,
    TERMINAL,
    GroupMember,
    GroupRunField,
    GroupRunRecord,
    MemberField,
    ProgressSnapshot,
    RunField,
    RunRecord,
    duration_seconds,
    run_number,
)
from tests.unit.factories import T0, run_finished, run_progress, run_started, sample_message
from tests.unit.test_logsink_domain import Runs, member_requested


def names(fields: type) -> set[str]:
    return {value for key, value in vars(fields).items() if key.isupper()}


def stored_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def read_back(model: type[RunRecord] | type[GroupRunRecord], doc: dict[str, Any], again: str) -> None:
    """The record holds every field of the document with its value (the id written again aside)."""
    record = model.from_document(doc)
    assert record.model_dump(by_alias=True, exclude_unset=True) == {
        k: v for k, v in doc.items() if k != again
    }
    assert set(doc) <= stored_names(model) | {again}


def test_the_names_written_are_the_fields_read() -> None:
    assert names(RunField) - {RunField.PROGRESS_AT} == stored_names(RunRecord) | {RunField.RUN_ID}
    record_field, snapshot_field = RunField.PROGRESS_AT.split(".")
    assert record_field == RunField.PROGRESS and snapshot_field in ProgressSnapshot.model_fields
    assert names(GroupRunField) == stored_names(GroupRunRecord) | {GroupRunField.GROUP_RUN_ID}
    assert names(MemberField) == stored_names(GroupMember)


def test_the_progress_kept_is_the_progress_event_without_its_run() -> None:
    assert set(ProgressSnapshot.model_fields) == set(RunProgressData.model_fields) - {"run_id"}


def test_every_status_is_terminal_or_in_flight() -> None:
    assert sorted(TERMINAL + IN_FLIGHT) == sorted(status.value for status in RunStatus)
    assert IN_FLIGHT == ("queued", "running")


def _plan(event: Envelope) -> Planned:
    return plan(event.model_dump(mode="json"))


def test_every_run_record_the_logsink_can_leave_reads_back_whole() -> None:
    events = [
        _plan(member_requested("7.1")),
        _plan(run_started("7.1")),
        _plan(run_progress("7.1", at=T0 + timedelta(seconds=1))),
        _plan(run_finished("7.1", status=RunStatus.PARTIAL)),
        _plan(run_started("7.1", executor="ex-2", attempt=2, at=T0 + timedelta(seconds=2))),
    ]
    for count in range(1, len(events) + 1):
        for order in itertools.permutations(events, count):
            runs = Runs()
            for planned in order:
                for writes in run_writes(fresh_events([planned])[0]):
                    runs.write(writes)
            if "7.1" in runs.docs:  # progress alone creates no record
                read_back(RunRecord, runs["7.1"], RunField.RUN_ID)


def test_every_group_run_record_the_logsink_can_leave_reads_back_whole() -> None:
    events = [
        _plan(member_requested("7.3")),
        _plan(member_requested("8.1")),
        _plan(sample_message(GroupRunStarted)),
        _plan(sample_message(GroupRunFinished)),
    ]
    for count in range(1, len(events) + 1):
        for order in itertools.permutations(events, count):
            group_runs = Runs()
            group_runs.apply(*(update for planned in order for update in planned.group_runs))
            read_back(GroupRunRecord, group_runs["2.5"], GroupRunField.GROUP_RUN_ID)


def test_a_record_with_few_fields_reads_with_the_defaults() -> None:
    run = RunRecord.from_document({"_id": "7.2", "job_id": 7, "counts": None})
    assert (run.run_id, run.status, run.counts, run.ended, run.progress) == (
        "7.2", RunStatus.QUEUED, RunCounts(), False, None
    )  # fmt: skip
    group_run = GroupRunRecord.from_document({"_id": "2.5", "job_ids": None})
    assert (group_run.status, group_run.job_ids, group_run.members, group_run.member_run_ids) == (
        RunStatus.RUNNING, [], [], []
    )  # fmt: skip
    assert group_run.duration_seconds is None and not group_run.ended


@pytest.mark.parametrize("seconds", [42.5, -3.0])
def test_a_group_run_lasts_from_its_start_to_its_end_never_less_than_nothing(seconds: float) -> None:
    finished = T0 + timedelta(seconds=seconds)
    doc = {"_id": "2.5", "status": "failed", "started_at": T0, "finished_at": finished}
    group_run = GroupRunRecord.from_document(doc)
    assert group_run.duration_seconds == max(seconds, 0.0) == duration_seconds(T0, finished)
    assert group_run.ended


def test_the_run_number_is_the_part_after_the_owner() -> None:
    assert (run_number("12.3"), run_number("2.41")) == (3, 41)
