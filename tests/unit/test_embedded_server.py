"""The embedded server's launcher narrows a filter with an `_id` and a top-level operator (`$and`, `$or`) to
`{_id: v}` for candidate selection only (shared/embedded_server.py); every other filter reaches the server's
picker unchanged."""

from __future__ import annotations

from typing import Any

from shared.embedded_server import narrow_id_candidates, string_equality_implies_string_type


class _Picker:
    """Stands for SecantusDB's `Storage`: records the filters its candidate picker was asked about."""

    def __init__(self, answer_for_id: list[bytes] | None) -> None:
        self.asked: list[dict[str, Any]] = []
        self.answer_for_id = answer_for_id

    def _try_index_id_keys(self, db: str, coll: str, filter_: dict[str, Any], **kwargs: Any) -> Any:
        self.asked.append(filter_)
        return self.answer_for_id if set(filter_) == {"_id"} else None


def _patched() -> type[_Picker]:
    class Picker(_Picker):
        pass

    narrow_id_candidates(Picker)
    return Picker


def test_a_reasserted_query_is_picked_by_its_id_alone() -> None:
    picker = _patched()([b"k1"])
    rewritten = {"_id": "run-1", "$and": [{"_id": "run-1", "owner": "e1", "status": "running"}]}
    assert picker._try_index_id_keys("db", "run_leases", rewritten) == [b"k1"]
    assert picker.asked == [{"_id": "run-1"}]


def test_a_guard_with_an_or_is_picked_by_its_id_alone() -> None:
    picker = _patched()([b"k1"])
    guard = {"_id": "job:7", "running": None, "$or": [{"expires_at": None}, {"expires_at": {"$gt": 5}}]}
    assert picker._try_index_id_keys("db", "schedule_state", guard) == [b"k1"]
    assert picker.asked == [{"_id": "job:7"}]


def test_an_id_the_picker_cannot_look_up_falls_back_to_the_whole_filter() -> None:
    picker = _patched()(None)  # e.g. `_id: {$gt: ...}`: not a point lookup
    rewritten = {"_id": {"$gt": "a"}, "$and": [{"status": "running"}]}
    assert picker._try_index_id_keys("db", "c", rewritten) is None
    assert picker.asked == [{"_id": {"$gt": "a"}}, rewritten]


def test_other_filters_reach_the_picker_unchanged() -> None:
    picker = _patched()([b"k1"])
    for filter_ in ({"_id": "a"}, {"_id": "a", "status": "x"}, {"$and": [{"_id": "a"}]},
                    {"status": "x", "$or": [{"x": 1}]}):  # fmt: skip
        picker.asked.clear()
        picker._try_index_id_keys("db", "c", filter_, collation=None)
        assert picker.asked == [filter_]


class _Planner:
    """Stands for `Storage._query_implies_partial`: proves only what equals the filter."""

    @staticmethod
    def _query_implies_partial(query: dict[str, Any], partial: dict[str, Any]) -> bool:
        return all(key in query and query[key] == wanted for key, wanted in partial.items())


def _planner() -> type[_Planner]:
    class Planner(_Planner):
        pass

    string_equality_implies_string_type(Planner)
    return Planner


def test_a_string_equality_stays_inside_a_string_type_filter() -> None:
    implies = _planner()._query_implies_partial
    string_type = {"writing": {"$type": "string"}}
    assert implies({"writing": "table_contacts"}, string_type)
    assert implies({"writing": {"$eq": "table_contacts"}, "status": "running"}, string_type)


def test_anything_else_is_left_to_the_planner() -> None:
    implies = _planner()._query_implies_partial
    string_type = {"writing": {"$type": "string"}}
    assert not implies({"writing": 7}, string_type)
    assert not implies({"writing": {"$in": ["a", "b"]}}, string_type)
    assert not implies({"status": "running"}, string_type)
    assert not implies({"writing": "a"}, {"writing": {"$type": "int"}})
    assert not implies({"status": "running"}, {"writing": None})  # a field the query leaves free
    assert implies({"status": "running"}, {"status": "running"})  # what the planner proves itself
