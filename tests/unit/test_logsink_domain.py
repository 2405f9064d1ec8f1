"""How run lifecycle events change a run record: the (filter, update) pairs of the logsink.

A small in-memory evaluator applies the pairs the way an upsert would, so event orders can be
replayed without a database.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.logsink.domain import (
    log_document,
    on_finished,
    on_progress,
    on_requested,
    on_started,
)
from shared.contracts.runs import TERMINAL_STATUSES, RunStatus
from tests.unit.factories import T0, run_finished, run_log, run_progress, run_requested, run_started

Update = tuple[dict[str, Any], dict[str, Any], bool]
MISSING = object()


def lookup(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def condition_holds(value: Any, condition: Any) -> bool:
    if not isinstance(condition, dict) or not any(k.startswith("$") for k in condition):
        return value is not MISSING and value == condition
    for operator, operand in condition.items():
        if operator == "$nin":
            if value is not MISSING and value in operand:
                return False
        elif operator == "$gt":
            if value is MISSING or not value > operand:
                return False
        elif operator == "$gte":
            if value is MISSING or not value >= operand:
                return False
        elif operator == "$not":
            if condition_holds(value, operand):
                return False
        else:
            raise AssertionError(f"operator {operator} not supported by this evaluator")
    return True


def matches(document: dict[str, Any], filter_: dict[str, Any]) -> bool:
    return all(condition_holds(lookup(document, path), cond) for path, cond in filter_.items())


class Runs:
    """Run records, updated the way the logsink repository applies `(filter, update, upsert)` triples."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def apply(self, *updates: Update) -> bool:
        """Apply each triple in turn; True if any of them changed the store."""
        results = [self._apply_one(*update) for update in updates]
        return any(results)

    def _apply_one(self, filter_: dict[str, Any], update: dict[str, Any], upsert: bool) -> bool:
        existing = self.docs.get(filter_["_id"])
        if existing is not None and not matches(existing, filter_):
            return False  # an upsert would hit the duplicate _id, which the repository ignores
        if existing is None and not upsert:
            return False
        inserting = existing is None
        doc = {"_id": filter_["_id"]} if existing is None else dict(existing)
        for operator, fields in update.items():
            for name, value in fields.items():
                if operator == "$set" or (operator == "$setOnInsert" and inserting):
                    doc[name] = value
                elif operator == "$min":
                    if name not in doc or value < doc[name]:
                        doc[name] = value
                elif operator != "$setOnInsert":
                    raise AssertionError(f"update operator {operator} not supported by this evaluator")
        self.docs[filter_["_id"]] = doc
        return doc != existing

    def __getitem__(self, run_id: str) -> dict[str, Any]:
        return self.docs[run_id]


TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


def terminal_record(status: RunStatus) -> dict[str, Any]:
    return {"_id": "7.1", "status": status.value, "attempt": 1, "progress": {"at": T0}}


# --- on_requested ----------------------------------------------------------------------------------


def test_on_requested_only_sets_the_status_on_insert() -> None:
    filter_, update, upsert = on_requested(run_requested("7.3"))

    assert filter_ == {"_id": "7.3"}
    assert upsert
    assert update["$setOnInsert"] == {"status": "queued"}
    assert "status" not in update["$set"]
    assert update["$set"]["run_number"] == 3
    assert update["$set"]["job_id"] == 7
    assert update["$set"]["trigger"] == "scheduled"
    assert update["$set"]["job_type"] == "import"


def test_requested_creates_a_queued_record() -> None:
    runs = Runs()

    runs.apply(on_requested(run_requested("7.1")))

    assert runs["7.1"]["status"] == "queued"
    assert runs["7.1"]["requested_at"] == T0


def test_late_run_requested_does_not_move_the_status_back() -> None:
    runs = Runs()
    runs.apply(*on_started(run_started("7.1")))

    runs.apply(on_requested(run_requested("7.1")))

    assert runs["7.1"]["status"] == "running"
    assert runs["7.1"]["requested_by"] == "scheduler"


# --- on_started ------------------------------------------------------------------------------------


def test_on_started_keeps_the_first_start_time_with_min() -> None:
    updates = on_started(run_started("7.1"))

    mins = [update["$min"] for _, update, _ in updates if "$min" in update]
    assert mins == [{"started_at": T0}]
    for _, update, _ in updates:
        assert "started_at" not in update.get("$set", {})
        assert "started_at" not in update.get("$setOnInsert", {})


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_on_started_never_sets_the_status_of_a_terminal_record(status: RunStatus) -> None:
    for filter_, update, upsert in on_started(run_started("7.1", attempt=2)):
        sets_status = "status" in update.get("$set", {})
        if sets_status:
            assert not matches(terminal_record(status), filter_)
        if upsert:
            assert not sets_status  # on insert only, never over an existing record


def test_started_moves_queued_to_running() -> None:
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")))

    runs.apply(*on_started(run_started("7.1", executor="ex-1")))

    assert runs["7.1"]["status"] == "running"
    assert runs["7.1"]["started_at"] == T0
    assert (runs["7.1"]["executor"], runs["7.1"]["attempt"]) == ("ex-1", 1)


def test_take_over_changes_executor_and_attempt_but_not_the_start_time() -> None:
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")))
    runs.apply(*on_started(run_started("7.1", at=T0, executor="ex-1", attempt=1)))

    runs.apply(*on_started(run_started("7.1", at=T0 + timedelta(minutes=5), executor="ex-2", attempt=2)))

    assert runs["7.1"]["started_at"] == T0
    assert (runs["7.1"]["executor"], runs["7.1"]["attempt"]) == ("ex-2", 2)
    assert runs["7.1"]["status"] == "running"


def test_late_start_of_an_earlier_attempt_keeps_the_later_executor() -> None:
    runs = Runs()
    runs.apply(*on_started(run_started("7.1", at=T0 + timedelta(minutes=5), executor="ex-2", attempt=2)))

    runs.apply(*on_started(run_started("7.1", at=T0, executor="ex-1", attempt=1)))

    assert (runs["7.1"]["executor"], runs["7.1"]["attempt"]) == ("ex-2", 2)
    assert runs["7.1"]["started_at"] == T0


def test_redelivered_start_changes_nothing() -> None:
    runs = Runs()
    runs.apply(*on_started(run_started("7.1")))
    before = dict(runs["7.1"])

    assert not runs.apply(*on_started(run_started("7.1")))
    assert runs["7.1"] == before


# --- on_progress -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_progress_does_not_match_a_terminal_record(status: RunStatus) -> None:
    filter_, _, upsert = on_progress(run_progress("7.1", at=T0 + timedelta(seconds=1)))

    assert not upsert
    assert not matches(terminal_record(status), filter_)
    assert matches({"_id": "7.1", "status": "running", "progress": {"at": T0}}, filter_)


def test_older_progress_does_not_replace_newer_progress() -> None:
    runs = Runs()
    runs.apply(*on_started(run_started("7.1")))
    runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(seconds=10))))

    applied = runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(seconds=5))))

    assert not applied
    assert runs["7.1"]["progress"]["at"] == T0 + timedelta(seconds=10)
    assert "run_id" not in runs["7.1"]["progress"]


# --- on_finished -----------------------------------------------------------------------------------


def test_on_finished_records_outcome_and_duration() -> None:
    event = run_finished("7.4", status=RunStatus.PARTIAL, finished_at=T0 + timedelta(minutes=2, seconds=3))

    filter_, update, upsert = on_finished(event)

    assert filter_["_id"] == "7.4"
    assert sorted(filter_["status"]["$nin"]) == TERMINAL
    assert upsert
    finished = update["$set"]
    assert finished["status"] == "partial"
    assert finished["duration_seconds"] == 123.0
    assert finished["run_number"] == 4
    assert finished["counts"] == {"read": 10, "inserted": 6, "updated": 3, "rejected": 1}
    assert finished["last_log_seq"] == 4
    assert finished["finished_event_id"] == event.id
    assert update["$min"] == {"started_at": T0}


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_on_finished_does_not_match_a_terminal_record(status: RunStatus) -> None:
    filter_, _, _ = on_finished(run_finished("7.1", status=RunStatus.FAILED))

    assert not matches(terminal_record(status), filter_)
    assert matches({"_id": "7.1", "status": "running"}, filter_)
    assert matches({"_id": "7.1", "status": "queued"}, filter_)


def test_duration_is_never_negative() -> None:
    event = run_finished(started_at=T0, finished_at=T0 - timedelta(seconds=3))

    assert on_finished(event)[1]["$set"]["duration_seconds"] == 0.0


def test_a_late_or_redelivered_event_cannot_change_the_outcome_of_a_terminal_record() -> None:
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")))
    runs.apply(*on_started(run_started("7.1")))
    first = run_finished("7.1", status=RunStatus.SUCCEEDED)
    runs.apply(on_finished(first))
    final = dict(runs["7.1"])

    assert not runs.apply(on_finished(first))
    assert not runs.apply(on_finished(run_finished("7.1", status=RunStatus.FAILED)))
    assert not runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(hours=1))))
    runs.apply(on_requested(run_requested("7.1")))
    runs.apply(*on_started(run_started("7.1", at=T0 + timedelta(seconds=1))))

    record = runs["7.1"]
    for name in ("status", "counts", "finished_at", "duration_seconds", "finished_event_id", "started_at"):
        assert record[name] == final[name], name
    assert record["status"] == "succeeded"
    assert "progress" not in record


def test_finished_before_started_keeps_the_terminal_status() -> None:
    runs = Runs()
    runs.apply(on_finished(run_finished("7.1", status=RunStatus.FAILED)))

    runs.apply(on_requested(run_requested("7.1")))
    runs.apply(*on_started(run_started("7.1", executor="ex-1")))

    assert runs["7.1"]["status"] == "failed"
    assert runs["7.1"]["started_at"] == T0
    assert runs["7.1"]["executor"] == "ex-1"  # a late start still says who ran it


# --- log_document ----------------------------------------------------------------------------------


def test_log_document_carries_the_line() -> None:
    document = log_document(run_log("7.1", seq=3))

    assert document["run_id"] == "7.1"
    assert document["seq"] == 3
    assert document["level"] == "warning"
    assert document["message"] == "hello"
    assert document["fields"] == {"n": 1, "ok": True}
    assert document["at"] == T0


def test_log_document_id_is_stable_for_a_redelivery() -> None:
    assert log_document(run_log("7.1", seq=3))["_id"] == log_document(run_log("7.1", seq=3))["_id"]


def test_log_document_id_is_unique_per_run_and_seq() -> None:
    pairs = [(f"{job}.{run}", seq) for job in (1, 11, 12) for run in (1, 2, 21) for seq in (1, 2, 12, 112)]

    ids = {log_document(run_log(run_id, seq))["_id"] for run_id, seq in pairs}

    assert len(ids) == len(pairs)


def test_log_document_ids_sort_by_seq_within_a_run() -> None:
    ids = [log_document(run_log("7.1", seq))["_id"] for seq in (1, 2, 9, 10, 100)]

    assert ids == sorted(ids)
