"""Export rules: formula neutralising, cell rendering, CSV bytes, file names, audience filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.executor.domain.export import (
    CsvEncoder,
    cell,
    matches,
    neutralise,
    pushdown_query,
    render_path,
    typed,
)
from services.executor.errors import UnwritableValue
from shared.contracts.jobs import Condition, CsvFormat, FieldType, Filter


@pytest.mark.parametrize(
    ("text", "expected"),
    [("=1+2", "'=1+2"), ("+41", "'+41"), ("-3", "'-3"), ("@SUM", "'@SUM"), ("a=b", "a=b"), ("", "")],
)
def test_cells_starting_like_a_formula_get_a_leading_quote(text: str, expected: str) -> None:
    assert neutralise(text) == expected


def test_cells_render_dates_booleans_and_numbers_plainly() -> None:
    assert cell(datetime(2024, 2, 29)) == "2024-02-29"
    assert cell(datetime(2024, 2, 29, 8, 30, tzinfo=UTC)) == "2024-02-29T08:30:00+00:00"
    assert cell(True) == "true" and cell(None) == "" and cell(3.0) == "3" and cell(-2) == "'-2"


def test_csv_encoder_writes_crlf_rows_with_quoting() -> None:
    encoder = CsvEncoder(CsvFormat(delimiter=";"), ["a", "b"])
    data = encoder.header() + encoder.rows([{"a": "x;y", "b": 'q"'}, {"a": "=cmd", "b": None}])
    assert data == b'a;b\r\n"x;y";"q"""\r\n\'=cmd;\r\n'


def test_path_template() -> None:
    now = datetime(2024, 7, 1, 9, 5, 3, tzinfo=UTC)
    assert render_path("out/{job_id}_{date}_{time}_{run_id}.csv", now=now, run_id="7.3", job_id=7) == (
        "out/7_20240701_090503_7.3.csv"
    )


def test_filters_compare_by_type_and_join_extension_fields() -> None:
    row = {"SCORE": 5, "CITY": "Bern", "prefs.COLOR": "red", "SINCE": datetime(2024, 1, 2, tzinfo=UTC)}
    assert matches(row, Filter(conditions=(Condition(field="SCORE", op="gte", value="5"),)))
    assert matches(row, Filter(conditions=(Condition(field="CITY", op="eq", value="bern"),)))
    assert not matches(row, Filter(conditions=(Condition(field="prefs.SIZE", op="exists"),)))
    assert matches(row, Filter(match="any", conditions=(
        Condition(field="prefs.SIZE", op="exists"), Condition(field="prefs.COLOR", op="in", value=["red", "blue"]),
    )))  # fmt: skip
    assert matches(row, Filter(conditions=(Condition(field="SINCE", op="lt", value="2024-02-01"),)))
    assert not matches(row, Filter(conditions=(Condition(field="MISSING", op="gt", value=1),)))


def test_only_all_conditions_on_list_fields_are_pushed_down() -> None:
    audience = Filter(conditions=(Condition(field="CITY", op="exists"), Condition(field="p.X", op="exists")))
    assert pushdown_query(audience) == {"CITY": {"$exists": True, "$ne": None}}
    assert pushdown_query(Filter(match="any", conditions=audience.conditions)) == {}


def test_whole_negative_numbers_are_neutralised_like_integers() -> None:
    assert cell(-3.0) == "'-3" and cell(-2) == "'-2" and cell(3.0) == "3"


def test_values_render_by_their_field_type_whatever_utc_object_the_database_returns() -> None:
    midnight = datetime(2024, 2, 29, tzinfo=timezone(timedelta(0)))  # not `UTC` itself, as from BSON
    assert cell(typed(midnight, FieldType.DATE)) == "2024-02-29"
    assert cell(typed(midnight, FieldType.TIMESTAMP)) == "2024-02-29T00:00:00+00:00"
    assert cell(typed(datetime(2024, 2, 29, 8, 30), FieldType.TIMESTAMP)) == "2024-02-29T08:30:00+00:00"


def test_a_byte_order_mark_is_written_once_however_many_batches() -> None:
    encoder = CsvEncoder(CsvFormat(encoding="utf-16"), ["a"])
    data = encoder.header() + encoder.rows([{"a": "x"}]) + encoder.rows([{"a": "é"}])
    assert data == "a\r\nx\r\né\r\n".encode("utf-16")


def test_filters_read_boolean_words_and_order_text_without_case() -> None:
    def holds(row: dict[str, object], field: str, op: str, value: str) -> bool:
        return matches(row, Filter(conditions=(Condition(field=field, op=op, value=value),)))  # type: ignore[arg-type]

    assert holds({"VIP": True}, "VIP", "eq", "true") and holds({"VIP": False}, "VIP", "eq", "no")
    assert not holds({"VIP": True}, "VIP", "eq", "false")
    assert holds({"CITY": "Bern"}, "CITY", "gt", "b") and not holds({"CITY": "bern"}, "CITY", "lt", "B")


def test_a_character_the_encoding_cannot_write_is_an_error_naming_its_column_never_a_question_mark() -> None:
    encoder = CsvEncoder(CsvFormat(encoding="latin-1"), ["id", "name"])
    assert encoder.header() + encoder.rows([{"id": "1", "name": "Zoë"}]) == "id,name\r\n1,Zoë\r\n".encode(
        "latin-1"
    )
    with pytest.raises(UnwritableValue, match=r"column 'name' \('Ω x'\) holds 'Ω' \(U\+03A9\).*latin-1"):
        encoder.rows([{"id": "2", "name": "plain"}, {"id": "3", "name": "Ω x"}])
