"""What the occurrences of a key do to the record they find (`importers/changes.py`): unchanged rows are not
written, and a take-over reads the run mark to count as the uninterrupted run would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.executor.importers.batch import Item
from services.executor.importers.changes import Mark, leaves_as_is, plan_item

TAG, EARLIER = "7.1#2.1", "7.1#1.1"  # this attempt, an earlier attempt of the same run


def occurrences(*rows: tuple[int, str]) -> Item:
    """An item for (line, value) rows of one key, the earlier ones folded into the last."""
    items = [Item(0, line, {"k": 1, "v": value}) for line, value in rows]
    return Item(0, items[-1].line, items[-1].row, earlier=tuple(items[:-1]))


def plan(doc: dict[str, Any] | None, item: Item, *, redo_after: tuple[int, int] = (-1, 0),
         update_existing: bool = True) -> tuple[tuple[str, ...], bool, str]:  # fmt: skip
    result = plan_item(doc, item, TAG, update_existing=update_existing, redo_after=redo_after,
                       same=lambda row: doc is not None and leaves_as_is(doc, row, ("v",)))  # fmt: skip
    return result.kinds, result.write, result.mark


def test_a_row_the_record_already_holds_is_unchanged_and_not_written() -> None:
    record = {"_id": 1, "k": 1, "v": "a", "_cx_run": "3.1#1.1@0:9"}
    assert plan(record, occurrences((5, "a"))) == (("unchanged",), False, "")
    assert plan(record, occurrences((5, "b"))) == (("update",), True, f"{TAG}@0:5")


def test_repeats_count_unchanged_until_one_changes_the_record_then_updated() -> None:
    record = {"_id": 1, "k": 1, "v": "a"}
    kinds, write, mark = plan(record, occurrences((3, "a"), (4, "b"), (6, "a")))
    assert (
        kinds == ("unchanged", "update", "duplicate") and write
    )  # the last one writes "a" back: still a write
    assert mark == f"{TAG}@0:4"  # where the run first changed it
    assert plan(record, occurrences((3, "a"), (4, "a"))) == (("unchanged", "unchanged"), False, "")


def test_a_record_this_attempt_wrote_counts_every_later_row_updated_and_is_written_only_if_it_changes() -> (
    None
):
    ours = {"_id": 1, "k": 1, "v": "b", "_cx_run": f"{TAG}@0:4"}
    assert plan(ours, occurrences((8, "b"))) == (("duplicate",), False, f"{TAG}@0:4")
    assert plan(ours, occurrences((8, "c"))) == (("duplicate",), True, f"{TAG}@0:4")


@pytest.mark.parametrize(
    ("line", "checkpoint", "expected"),
    [
        (3, (0, 2), "unchanged"),  # before the dead attempt's change: it found the record as it was
        (4, (0, 2), "update"),  # the change itself, not counted yet: counted now
        (6, (0, 5), "duplicate"),  # the change was counted before the checkpoint: a later occurrence
    ],
)
def test_a_take_over_counts_rows_around_the_dead_attempts_change_as_the_uninterrupted_run(
    line: int, checkpoint: tuple[int, int], expected: str
) -> None:
    changed = {"_id": 1, "k": 1, "v": "b", "_cx_run": f"{EARLIER}@0:4"}  # the value from before is gone
    kinds, write, _ = plan(changed, occurrences((line, "a")), redo_after=checkpoint)
    assert kinds == (expected,) and write == (expected != "unchanged")


def test_no_update_leaves_existing_records_alone_but_updates_the_runs_own() -> None:
    assert plan({"_id": 1, "k": 1, "v": "a"}, occurrences((3, "b")), update_existing=False)[:2] == (
        ("unchanged",), False,
    )  # fmt: skip
    born = {"_id": "7.1:0:2", "k": 1, "v": "a", "_cx_run": f"{TAG}@0:2"}
    assert plan(born, occurrences((3, "b")), update_existing=False)[:2] == (("duplicate",), True)


def test_a_new_key_is_inserted_once_and_its_repeats_update_it() -> None:
    assert plan(None, occurrences((2, "a"), (5, "b"))) == (("insert", "duplicate"), True, f"{TAG}@0:2")


def test_values_compare_as_the_database_stores_them() -> None:
    instant = datetime(2024, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    stored = {"when": instant, "n": 5, "flag": True, "x": 1.0}
    assert leaves_as_is(
        stored, {"when": instant.replace(tzinfo=None, microsecond=123456)}, ()
    )  # naive is UTC, ms
    assert leaves_as_is(stored, {"when": instant.astimezone(timezone(timedelta(hours=2)))}, ())
    assert not leaves_as_is(stored, {"n": True}, ()) and not leaves_as_is(stored, {"flag": 1}, ())
    assert not leaves_as_is(stored, {"x": 1}, ()) and not leaves_as_is(stored, {"n": "5"}, ())
    assert not leaves_as_is(stored, {"missing": "a"}, ())
    assert not leaves_as_is(stored, {"n": 5}, ("flag",))  # the row leaves a mapped field empty: it is cleared
    assert leaves_as_is(stored, {"n": 5}, ("absent",))


def test_marks_round_trip_and_older_marks_without_a_position_are_read() -> None:
    assert Mark.of("7.1#2.1@1:40") == Mark("7.1#2.1", (1, 40))
    assert Mark.of(Mark("7.1#2.1", (1, 40)).text()).changed_at == (1, 40)
    assert Mark.of("7.1#2.1") == Mark("7.1#2.1") and Mark.of(None).tag is None
    assert Mark.of("7.1#2.1").run == "7.1"
