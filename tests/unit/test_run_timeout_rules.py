"""A job's `max_duration`: an ISO 8601 duration, more than zero and at most 24 hours."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from shared.contracts.durations import MAX_RUN_DURATION, parse_max_duration
from shared.contracts.jobs import ExportSpec, ImportSpec
from shared.contracts.runs import RunFinishedData


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT2H", timedelta(hours=2)),
        ("PT2S", timedelta(seconds=2)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("PT1H30M", timedelta(minutes=90)),
        ("pt45m", timedelta(minutes=45)),
        ("P1D", timedelta(days=1)),
        ("PT24H", MAX_RUN_DURATION),
        ("P0DT23H59M59S", timedelta(hours=24) - timedelta(seconds=1)),
    ],
)
def test_valid_durations(text: str, expected: timedelta) -> None:
    assert parse_max_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("PT0S", "longer than zero"),
        ("P0D", "longer than zero"),
        ("PT24H1S", "24 hours"),
        ("P2D", "24 hours"),
        ("PT99999999999999999999H", "24 hours"),
        ("P", "not an ISO 8601 duration"),
        ("PT", "not an ISO 8601 duration"),
        ("P1DT", "not an ISO 8601 duration"),
        ("P1Y", "not an ISO 8601 duration"),
        ("P1W", "not an ISO 8601 duration"),
        ("2h", "not an ISO 8601 duration"),
        ("PT-5S", "not an ISO 8601 duration"),
        ("", "not an ISO 8601 duration"),
    ],
)
def test_invalid_durations_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_max_duration(text)


IMPORT: dict[str, Any] = {
    "kind": "import",
    "source": {"kind": "sftp", "connection_id": 1, "path": "a.csv"},
    "mapping": [{"column": "a", "field": "b"}],
    "target": {"kind": "custom", "table": "t"},
}
EXPORT: dict[str, Any] = {
    "kind": "export",
    "source": {"kind": "table", "table": "t"},
    "destination": {"kind": "sftp", "connection_id": 1, "path_template": "out.csv"},
}


@pytest.mark.parametrize(("model", "body"), [(ImportSpec, IMPORT), (ExportSpec, EXPORT)])
def test_a_spec_keeps_a_valid_limit_normalised_and_names_the_field_of_a_bad_one(
    model: type[ImportSpec] | type[ExportSpec], body: dict[str, Any]
) -> None:
    assert model.model_validate(body).max_duration is None
    assert model.model_validate({**body, "max_duration": " pt2h "}).max_duration == "PT2H"
    with pytest.raises(ValidationError) as caught:
        model.model_validate({**body, "max_duration": "PT25H"})
    assert [error["loc"] for error in caught.value.errors()] == [("max_duration",)]


def test_run_finished_defaults_to_not_timed_out() -> None:
    assert RunFinishedData.model_fields["timed_out"].default is False
    fields = list(RunFinishedData.model_fields)
    assert fields[fields.index("last_log_seq") + 1] == "timed_out"  # optional fields added at the end
