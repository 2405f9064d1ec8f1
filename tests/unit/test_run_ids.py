"""Run ids (`JobID.RunID`). The scheduler's run-now use case: tests/unit/test_scheduler_service.py."""

from __future__ import annotations

import pytest

from services.scheduler.domain import next_run_id
from shared.errors import ValidationFailed
from shared.runid import RunId

# --- RunId -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1.1", "7.12", "123.4567"])
def test_run_id_str_and_parse_round_trip(text: str) -> None:
    run_id = RunId.parse(text)

    assert str(run_id) == text
    assert RunId.parse(str(run_id)) == run_id


def test_run_id_parts() -> None:
    run_id = RunId.parse("42.7")

    assert (run_id.owner_id, run_id.number) == (42, 7)
    assert str(RunId(42, 7)) == "42.7"


def test_run_ids_order_numerically_by_owner_then_number() -> None:
    texts = ["10.1", "2.10", "2.9", "1.100", "2.1"]

    ordered = sorted(RunId.parse(t) for t in texts)

    assert [str(r) for r in ordered] == ["1.100", "2.1", "2.9", "2.10", "10.1"]
    assert RunId(2, 9) < RunId(2, 10) < RunId(3, 1)


@pytest.mark.parametrize("text", ["", "1", "1.", ".1", "a.b", "1.b", "1.2.3", "1,2", " 1.2", "-1.2", "1.-2"])
def test_malformed_run_id_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        RunId.parse(text)

    assert error.value.field == "run_id"


@pytest.mark.parametrize(("owner", "number"), [(0, 1), (1, 0), (-1, 2)])
def test_run_id_parts_must_be_positive(owner: int, number: int) -> None:
    with pytest.raises(ValidationFailed):
        RunId(owner, number)


def test_next_run_id_counts_up_from_one() -> None:
    assert next_run_id(5, 0) == RunId(5, 1)
    assert next_run_id(5, 1) == RunId(5, 2)
    assert str(next_run_id(5, 41)) == "5.42"
