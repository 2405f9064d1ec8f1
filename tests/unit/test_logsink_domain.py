"""How run lifecycle events change a run record: the (filter, update) pairs of the logsink.

A small in-memory evaluator applies the pairs the way an upsert would, and a run's writes of a batch
the way the repository does (together, or one by one when the record refuses them together), so event
orders and groupings into batches can be replayed without a database.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.logsink.domain import (
    Planned,
    RunWrites,
    fresh_events,
    log_line,
    on_finished,
    on_group_finished,
    on_group_started,
    on_progress,
    on_requested,
    on_started,
    plan,
    run_writes,
    superseded_progress,
)
from services.logsink.errors import UnknownEvent
from shared.contracts import GroupRunFinished, GroupRunStarted, RunRequested
from shared.contracts.runs import TERMINAL_STATUSES, RunStatus, Trigger
from tests.unit.factories import (
    T0,
    run_finished,
    run_log,
    run_progress,
    run_requested,
    run_started,
    sample_message,
)

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
        elif operator == "$lt":
            if value is MISSING or not value < operand:
                return False
        elif operator == "$gte":
            if value is MISSING or not value >= operand:
                return False
        elif operator == "$not":
            if condition_holds(value, operand):
                return False
        elif operator == "$exists":
            if (value is not MISSING) != operand:
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

    def write(self, writes: RunWrites) -> list[str]:
        """A run's writes of one batch as the repository makes them; returns the kinds refused."""
        if writes.together is not None and not self.refuses(*writes.together):
            self.apply(writes.together)
            return []
        refused = []
        for kind, update in writes.alone:
            if self.refuses(*update):
                refused.append(kind)
            else:
                self.apply(update)
        return refused

    def refuses(self, filter_: dict[str, Any], update: dict[str, Any], upsert: bool) -> bool:
        """An upsert whose filter excludes the record that exists: a duplicate key, skipped."""
        existing = self.docs.get(filter_["_id"])
        return upsert and existing is not None and not matches(existing, filter_)

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
                elif operator == "$addToSet":
                    items = list(doc.get(name, []))
                    doc[name] = items if value in items else [*items, value]
                elif operator != "$setOnInsert":
                    raise AssertionError(f"update operator {operator} not supported by this evaluator")
        self.docs[filter_["_id"]] = doc
        return doc != existing

    def __getitem__(self, run_id: str) -> dict[str, Any]:
        return self.docs[run_id]


TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)


def terminal_record(status: RunStatus) -> dict[str, Any]:
    return {"_id": "7.1", "status": status.value, "attempt": 1}


# --- on_requested ----------------------------------------------------------------------------------


def test_on_requested_only_sets_the_status_on_insert() -> None:
    filter_, update, upsert = on_requested(run_requested("7.3")).statement()

    assert filter_ == {"_id": "7.3", "requested_at": {"$exists": False}}  # not requested yet
    assert upsert
    assert update["$setOnInsert"] == {"status": "queued"}
    assert "status" not in update["$set"]
    assert update["$set"]["run_number"] == 3
    assert update["$set"]["job_id"] == 7
    assert update["$set"]["trigger"] == "scheduled"
    assert update["$set"]["job_type"] == "import"


def test_requested_creates_a_queued_record() -> None:
    runs = Runs()

    runs.apply(on_requested(run_requested("7.1")).statement())

    assert runs["7.1"]["status"] == "queued"
    assert runs["7.1"]["requested_at"] == T0


def test_a_redelivered_request_is_refused() -> None:
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")).statement())

    assert runs.refuses(*on_requested(run_requested("7.1")).statement())


def test_late_run_requested_does_not_move_the_status_back() -> None:
    runs = Runs()
    runs.apply(*on_started(run_started("7.1")).statements())

    runs.apply(on_requested(run_requested("7.1")).statement())

    assert runs["7.1"]["status"] == "running"
    assert runs["7.1"]["requested_by"] == "scheduler"


# --- on_started ------------------------------------------------------------------------------------


def test_on_started_keeps_the_first_start_time_with_min() -> None:
    updates = on_started(run_started("7.1")).statements()

    mins = [update["$min"] for _, update, _ in updates if "$min" in update]
    assert mins == [{"started_at": T0}]
    for _, update, _ in updates:
        assert "started_at" not in update.get("$set", {})
        assert "started_at" not in update.get("$setOnInsert", {})


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_on_started_never_sets_the_status_of_a_terminal_record(status: RunStatus) -> None:
    for filter_, update, upsert in on_started(run_started("7.1", attempt=2)).statements():
        sets_status = "status" in update.get("$set", {})
        if sets_status:
            assert not matches(terminal_record(status), filter_)
        if upsert:
            assert not sets_status  # on insert only, never over an existing record


def test_started_moves_queued_to_running() -> None:
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")).statement())

    runs.apply(*on_started(run_started("7.1", executor="ex-1")).statements())

    assert runs["7.1"]["status"] == "running"
    assert runs["7.1"]["started_at"] == T0
    assert (runs["7.1"]["executor"], runs["7.1"]["attempt"]) == ("ex-1", 1)


def test_take_over_changes_executor_and_attempt_but_not_the_start_time() -> None:
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")).statement())
    runs.apply(*on_started(run_started("7.1", at=T0, executor="ex-1", attempt=1)).statements())

    runs.apply(
        *on_started(run_started("7.1", at=T0 + timedelta(minutes=5), executor="ex-2", attempt=2)).statements()
    )

    assert runs["7.1"]["started_at"] == T0
    assert (runs["7.1"]["executor"], runs["7.1"]["attempt"]) == ("ex-2", 2)
    assert runs["7.1"]["status"] == "running"


def test_late_start_of_an_earlier_attempt_keeps_the_later_executor() -> None:
    runs = Runs()
    runs.apply(
        *on_started(run_started("7.1", at=T0 + timedelta(minutes=5), executor="ex-2", attempt=2)).statements()
    )

    runs.apply(*on_started(run_started("7.1", at=T0, executor="ex-1", attempt=1)).statements())

    assert (runs["7.1"]["executor"], runs["7.1"]["attempt"]) == ("ex-2", 2)
    assert runs["7.1"]["started_at"] == T0


def test_redelivered_start_changes_nothing() -> None:
    runs = Runs()
    runs.apply(*on_started(run_started("7.1")).statements())
    before = dict(runs["7.1"])

    assert not runs.apply(*on_started(run_started("7.1")).statements())
    assert runs["7.1"] == before


# --- progress ------------------------------------------------------------------------------------


def test_progress_is_kept_in_the_record_of_a_running_run_and_never_creates_one() -> None:
    filter_, update, upsert = on_progress(run_progress("7.1", at=T0)).statement()

    assert not upsert  # a snapshot alone never creates a record
    assert update == {"$set": {"progress": {**run_progress().data.model_dump(exclude={"run_id"}), "at": T0}}}
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")).statement(), *on_started(run_started("7.1")).statements())
    assert runs.apply((filter_, update, upsert))
    assert runs["7.1"]["progress"]["at"] == T0


def test_only_a_newer_snapshot_of_a_run_not_terminal_replaces_the_stored_one() -> None:
    runs = Runs()
    runs.apply(*on_started(run_started("7.1")).statements())
    runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(seconds=10))).statement())

    assert not runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(seconds=5))).statement())
    assert not runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(seconds=10))).statement())
    assert runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(seconds=11))).statement())
    runs.apply(on_finished(run_finished("7.1")).statement())
    final = dict(runs["7.1"])
    assert not runs.apply(on_progress(run_progress("7.1", at=T0 + timedelta(hours=1))).statement())
    assert runs["7.1"] == final  # a late snapshot after the end changes nothing


# --- on_finished -----------------------------------------------------------------------------------


def test_on_finished_records_outcome_and_duration() -> None:
    event = run_finished("7.4", status=RunStatus.PARTIAL, finished_at=T0 + timedelta(minutes=2, seconds=3))

    filter_, update, upsert = on_finished(event).statement()

    assert filter_["_id"] == "7.4"
    assert sorted(filter_["status"]["$nin"]) == TERMINAL
    assert upsert
    finished = update["$set"]
    assert finished["status"] == "partial"
    assert finished["duration_seconds"] == 123.0
    assert finished["run_number"] == 4
    assert finished["counts"] == {"read": 10, "inserted": 6, "updated": 3, "rejected": 1, "unchanged": 0,
                                  "skipped": 0}  # fmt: skip
    assert finished["last_log_seq"] == 4
    assert finished["finished_event_id"] == event.id
    assert update["$min"] == {"started_at": T0}


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_on_finished_does_not_match_a_terminal_record(status: RunStatus) -> None:
    filter_, _, _ = on_finished(run_finished("7.1", status=RunStatus.FAILED)).statement()

    assert not matches(terminal_record(status), filter_)
    assert matches({"_id": "7.1", "status": "running"}, filter_)
    assert matches({"_id": "7.1", "status": "queued"}, filter_)


def test_duration_is_never_negative() -> None:
    event = run_finished(started_at=T0, finished_at=T0 - timedelta(seconds=3))

    assert on_finished(event).statement()[1]["$set"]["duration_seconds"] == 0.0


def test_a_late_or_redelivered_event_cannot_change_the_outcome_of_a_terminal_record() -> None:
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")).statement())
    runs.apply(*on_started(run_started("7.1")).statements())
    first = run_finished("7.1", status=RunStatus.SUCCEEDED)
    runs.apply(on_finished(first).statement())
    final = dict(runs["7.1"])

    assert not runs.apply(on_finished(first).statement())
    assert not runs.apply(on_finished(run_finished("7.1", status=RunStatus.FAILED)).statement())
    runs.apply(on_requested(run_requested("7.1")).statement())
    runs.apply(*on_started(run_started("7.1", at=T0 + timedelta(seconds=1))).statements())

    record = runs["7.1"]
    for name in ("status", "counts", "finished_at", "duration_seconds", "finished_event_id", "started_at"):
        assert record[name] == final[name], name
    assert record["status"] == "succeeded"
    assert "progress" not in record


def test_finished_before_started_keeps_the_terminal_status() -> None:
    runs = Runs()
    runs.apply(on_finished(run_finished("7.1", status=RunStatus.FAILED)).statement())

    runs.apply(on_requested(run_requested("7.1")).statement())
    runs.apply(*on_started(run_started("7.1", executor="ex-1")).statements())

    assert runs["7.1"]["status"] == "failed"
    assert runs["7.1"]["started_at"] == T0
    assert runs["7.1"]["executor"] == "ex-1"  # a late start still says who ran it


# --- log_line -------------------------------------------------------------------------------------


def test_log_line_carries_the_line() -> None:
    line = log_line(run_log("7.1", seq=3))

    assert line == {
        "run_id": "7.1",
        "seq": 3,
        "level": "warning",
        "message": "hello",
        "fields": {"n": 1, "ok": True},
        "at": T0,
    }


# --- plan: every event type, unknown ones refused ---------------------------------------------------


def test_plan_routes_every_event_to_its_writes() -> None:
    log = plan(run_log("7.1", 2).model_dump(mode="json"))
    assert (log.kind, log.once_by_id, log.run) == ("run.log", False, None)
    assert log.log is not None and (log.log["run_id"], log.log["seq"]) == ("7.1", 2)

    progress = plan(run_progress("7.1").model_dump(mode="json"))
    assert (progress.kind, progress.once_by_id) == ("run.progress", False)
    assert progress.run is not None and progress.run.sets["progress"]["at"] == T0

    started = plan(run_started("7.1").model_dump(mode="json"))
    assert started.kind == "run.started" and started.once_by_id and started.run is not None
    assert len(started.run.statements()) == 3

    finished = plan(run_finished("7.1").model_dump(mode="json"))
    assert finished.kind == "run.finished" and finished.event_id and finished.once_by_id

    plain = plan(run_requested("7.1").model_dump(mode="json"))
    assert plain.group_runs == ()  # not a group member


def test_plan_refuses_an_unknown_event_type() -> None:
    with pytest.raises(UnknownEvent):
        plan({"type": "connect.something.v9", "id": "x"})


def test_plan_refuses_an_invalid_event() -> None:
    body = run_log().model_dump(mode="json")
    body["data"]["seq"] = 0
    with pytest.raises(ValidationError):
        plan(body)


def test_only_the_newest_progress_of_a_run_in_a_batch_is_written() -> None:
    batch = [
        plan(run_progress("7.1", at=T0 + timedelta(seconds=2)).model_dump(mode="json")),
        plan(run_progress("7.1", at=T0 + timedelta(seconds=5)).model_dump(mode="json")),
        plan(run_progress("8.1", at=T0).model_dump(mode="json")),
        plan(run_progress("7.1", at=T0 + timedelta(seconds=3)).model_dump(mode="json")),
        plan(run_log("7.1").model_dump(mode="json")),
    ]

    assert superseded_progress(batch) == {0, 3}


def test_a_repeat_in_a_batch_and_the_progress_of_a_run_that_ends_in_it_are_not_written() -> None:
    finished = _plan(run_finished("7.1"))
    batch = [
        _plan(run_started("7.1")),
        _plan(run_progress("7.1")),
        _plan(run_progress("8.1")),
        finished,
        finished,
        _plan(run_log("7.1")),
    ]

    fresh, repeats = fresh_events(batch)

    assert [p.kind for p in fresh] == ["run.started", "run.progress", "run.finished", "run.log"]
    assert fresh[1].run is not None and fresh[1].run.run_id == "8.1"
    assert repeats == {"run.finished": 1}


# --- a run's writes of one batch ------------------------------------------------------------------


def _plan(event: Any) -> Planned:
    return plan(event.model_dump(mode="json"))


def a_short_run(run_id: str = "7.1") -> list[Planned]:
    return [
        _plan(run_requested(run_id)),
        _plan(run_started(run_id)),
        _plan(run_progress(run_id, at=T0 + timedelta(seconds=1))),
        _plan(run_finished(run_id)),
    ]


def one_by_one(events: list[Planned]) -> dict[str, Any]:
    runs = Runs()
    for planned in events:
        assert planned.run is not None
        runs.apply(*planned.run.statements())
    return shown(runs["7.1"])


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """A record as readers see it: a terminal one without progress."""
    if record.get("status") in TERMINAL:
        return {name: value for name, value in record.items() if name != "progress"}
    return record


def test_a_short_run_in_one_batch_is_one_statement() -> None:
    events = a_short_run()
    (writes,) = run_writes(fresh_events(events)[0])
    assert writes.together is not None

    runs = Runs()
    assert runs.write(writes) == []
    assert runs["7.1"] == one_by_one(events)
    assert "progress" not in runs["7.1"]  # it ended in the same batch
    assert runs["7.1"]["status"] == "succeeded" and runs["7.1"]["executor"] == "ex-1"


def test_any_order_and_grouping_into_batches_gives_the_record_of_one_by_one_and_refuses_repeats() -> None:
    """Every order of a run's events, cut into batches at every place: the same record as applying
    them one by one in the order of the run's life; delivered again (in one batch), each is refused."""
    events = a_short_run()
    expected = one_by_one(events)
    take_over = _plan(run_started("7.1", executor="ex-2", attempt=2, at=T0 + timedelta(seconds=2)))
    for order in itertools.permutations([*events, take_over]):
        for cuts in itertools.product((False, True), repeat=len(order) - 1):
            runs = Runs()
            for batch in _batches(list(order), cuts):
                for writes in run_writes(fresh_events(batch)[0]):
                    runs.write(writes)
            record = runs["7.1"]
            assert shown(record) == expected | {"executor": "ex-2", "attempt": 2}, (order, cuts)
            (again,) = run_writes(fresh_events(list(order))[0])
            assert sorted(runs.write(again)) == [
                "run.finished",
                "run.requested",
                "run.started",
                "run.started",
            ]
            assert runs["7.1"] == record


def _batches(events: list[Planned], cuts: tuple[bool, ...]) -> list[list[Planned]]:
    batches = [[events[0]]]
    for planned, cut in zip(events[1:], cuts, strict=True):
        if cut:
            batches.append([])
        batches[-1].append(planned)
    return batches


def test_two_starts_of_one_run_in_a_batch_are_written_one_by_one() -> None:
    batch = [_plan(run_started("7.1", attempt=2, executor="ex-2")), _plan(run_started("7.1"))]

    (writes,) = run_writes(batch)

    assert writes.together is None and [kind for kind, _ in writes.alone] == ["run.started"] * 6
    runs = Runs()
    runs.write(writes)
    assert (runs["7.1"]["executor"], runs["7.1"]["attempt"]) == ("ex-2", 2)


# --- group runs ------------------------------------------------------------------------------------


def member_requested(run_id: str, group_run_id: str = "2.5") -> RunRequested:
    event = run_requested(run_id)
    data = event.data.model_copy(
        update={
            "group_run_id": group_run_id,
            "group_id": 2,
            "group_name": "morning",
            "trigger": Trigger.GROUP,
        }
    )
    return event.model_copy(update={"data": data})


def test_a_member_run_records_its_group_and_joins_the_group_run() -> None:
    planned = plan(member_requested("7.3").model_dump(mode="json"))

    assert planned.run is not None
    (_, run_update, _) = planned.run.statement()
    assert run_update["$set"]["group_run_id"] == "2.5"
    assert run_update["$set"]["group_id"] == 2
    assert run_update["$set"]["group_name"] == "morning"
    (filter_, update, upsert) = planned.group_runs[0]
    assert filter_ == {"_id": "2.5"} and upsert
    assert update["$addToSet"] == {"members": {"run_id": "7.3", "job_id": 7, "requested_at": T0}}
    assert update["$setOnInsert"] == {"status": "running"}
    assert "status" not in update["$set"]


def test_group_started_sets_name_jobs_and_first_start() -> None:
    event = sample_message(GroupRunStarted)
    filter_, update, upsert = plan(event.model_dump(mode="json")).group_runs[0]

    assert filter_ == {"_id": "2.5"} and upsert
    assert update["$set"]["group_name"] == "morning"
    assert update["$set"]["job_ids"] == [7, 8]
    assert update["$min"] == {"started_at": T0}
    assert update["$setOnInsert"] == {"status": "running"}


@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_group_finished_never_overwrites_a_terminal_group_run(status: RunStatus) -> None:
    event = sample_message(GroupRunFinished)
    filter_, update, upsert = plan(event.model_dump(mode="json")).group_runs[0]

    assert upsert
    assert not matches({"_id": "2.5", "status": status.value}, filter_)
    assert matches({"_id": "2.5", "status": "running"}, filter_)
    assert update["$set"]["member_run_ids"] == ["7.3", "8.1"]
    assert update["$set"]["status"] == "failed"


def test_group_events_in_any_order_give_the_same_group_run() -> None:
    started = on_group_started(sample_message(GroupRunStarted))  # type: ignore[arg-type]
    finished = on_group_finished(sample_message(GroupRunFinished))  # type: ignore[arg-type]
    results = []
    for order in ([started, finished], [finished, started]):
        runs = Runs()
        runs.apply(*order)
        runs.apply(finished)  # redelivered
        results.append(runs["2.5"])
    assert results[0] == results[1]
    assert results[0]["status"] == "failed"
    assert results[0]["group_name"] == "morning"


def test_a_skipped_run_is_recorded_as_ended_skipped() -> None:
    """`skipped` (nothing to import, issue #17) is terminal like the others: recorded, never moved back."""
    runs = Runs()
    runs.apply(on_requested(run_requested("7.1")).statement())
    runs.apply(*on_started(run_started("7.1")).statements())
    runs.apply(on_finished(run_finished("7.1", status=RunStatus.SKIPPED)).statement())
    assert runs["7.1"]["status"] == "skipped"
    assert not runs.apply(on_finished(run_finished("7.1", status=RunStatus.FAILED)).statement())
    runs.apply(*on_started(run_started("7.1", at=T0 + timedelta(seconds=1))).statements())
    assert runs["7.1"]["status"] == "skipped"
