"""Import rules of the executor: CSV splitting over byte chunks, column plans, mapping and coercion."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.executor.domain import (
    CsvRecord,
    CsvSplitter,
    Rejection,
    Tally,
    coerce,
    key_of,
    map_record,
    percent_milestone,
    plan_columns,
    rejects_csv_lines,
    rejects_path,
)
from services.executor.errors import BadFile
from services.executor.importers.batch import Item, WriteOutcome
from shared.contracts.jobs import CsvFormat, FieldMapping, FieldType, TableField
from shared.contracts.runs import RunCounts, RunStatus

CHUNK_SIZES = [1, 3, None]  # None: the whole file in one chunk


def split(data: bytes, chunk: int | None, fmt: CsvFormat | None = None) -> list[tuple[int, list[str]]]:
    splitter = CsvSplitter(fmt or CsvFormat())
    size = chunk or max(len(data), 1)
    records: list[CsvRecord] = []
    for start in range(0, len(data), size):
        records += splitter.feed(data[start : start + size])
    records += splitter.feed(b"", final=True)
    return [(r.line, r.values) for r in records]


# --- CsvSplitter -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_utf8_byte_order_mark_is_removed(chunk: int | None) -> None:
    data = "\ufeffemail,name\na@x.io,Zoë\n".encode()

    assert split(data, chunk) == [(1, ["email", "name"]), (2, ["a@x.io", "Zoë"])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_crlf_lf_and_lone_cr_all_end_lines(chunk: int | None) -> None:
    data = b"a,b\r\n1,2\n3,4\r5,6\r\n7,8"

    assert split(data, chunk) == [
        (1, ["a", "b"]),
        (2, ["1", "2"]),
        (3, ["3", "4"]),
        (4, ["5", "6"]),
        (5, ["7", "8"]),
    ]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_quoted_fields_hold_delimiters_doubled_quotes_and_newlines(chunk: int | None) -> None:
    data = b'id,text\r\n1,"x, y"\r\n2,"she said ""hi"""\r\n3,"first\r\nsecond\nthird"\r\n4,"a\rb"\n5,plain\n'

    assert split(data, chunk) == [
        (1, ["id", "text"]),
        (2, ["1", "x, y"]),
        (3, ["2", 'she said "hi"']),
        (4, ["3", "first\r\nsecond\nthird"]),
        (7, ["4", "a\rb"]),
        (9, ["5", "plain"]),
    ]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_empty_line_inside_quotes_is_part_of_the_value(chunk: int | None) -> None:
    data = b'a,b\n1,"x\n\ny"\n2,3\n'

    assert split(data, chunk) == [(1, ["a", "b"]), (2, ["1", "x\n\ny"]), (5, ["2", "3"])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_empty_lines_are_skipped_but_counted(chunk: int | None) -> None:
    data = b"a,b\n\n1,2\r\n\r\n\r3,4\n\n"

    assert split(data, chunk) == [(1, ["a", "b"]), (3, ["1", "2"]), (6, ["3", "4"])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_last_line_without_line_end_is_a_record(chunk: int | None) -> None:
    assert split(b"a,b\n1,2", chunk) == [(1, ["a", "b"]), (2, ["1", "2"])]
    assert split(b"a,b\n1,2\r", chunk) == [(1, ["a", "b"]), (2, ["1", "2"])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_latin1_encoding(chunk: int | None) -> None:
    data = "name,city\nJosé,Zürich\n".encode("latin-1")

    records = split(data, chunk, CsvFormat(encoding="latin-1"))

    assert records == [(1, ["name", "city"]), (2, ["José", "Zürich"])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_semicolon_delimiter(chunk: int | None) -> None:
    data = b'a;b;c\n1;"x;y";2,5\n'

    assert split(data, chunk, CsvFormat(delimiter=";")) == [(1, ["a", "b", "c"]), (2, ["1", "x;y", "2,5"])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_other_quote_character(chunk: int | None) -> None:
    data = b"a,b\n'x,y','it''s\nhere'\n"

    assert split(data, chunk, CsvFormat(quote="'")) == [(1, ["a", "b"]), (2, ["x,y", "it's\nhere"])]


@pytest.mark.parametrize("chunk", CHUNK_SIZES)
def test_empty_file_and_bom_only_file_have_no_records(chunk: int | None) -> None:
    assert split(b"", chunk) == []
    assert split(b"\xef\xbb\xbf", chunk) == []


@pytest.mark.parametrize("chunk", [1, 3])
def test_invalid_utf8_is_a_bad_file_naming_the_line(chunk: int) -> None:
    data = b"h\nok\nb\xffd\nz\n"

    with pytest.raises(BadFile) as error:
        split(data, chunk)

    assert "line 3" in error.value.message
    assert "utf-8" in error.value.message


def test_truncated_utf8_at_the_end_is_a_bad_file() -> None:
    splitter = CsvSplitter(CsvFormat())
    splitter.feed(b"a\n\xc3")

    with pytest.raises(BadFile):
        splitter.feed(b"", final=True)


def test_unknown_encoding_is_a_bad_file() -> None:
    # Jobs are refused such an encoding when created; a job stored before that rule still fails clearly.
    with pytest.raises(BadFile) as error:
        CsvSplitter(CsvFormat.model_construct(encoding="no-such-codec"))

    assert "no-such-codec" in error.value.message


def test_records_come_out_as_soon_as_they_are_complete() -> None:
    splitter = CsvSplitter(CsvFormat())

    assert splitter.feed(b"a,b\n1,") == [CsvRecord(1, ["a", "b"])]
    assert splitter.feed(b'"open\n') == []
    assert splitter.feed(b'closed"\n') == [CsvRecord(2, ["1", "open\nclosed"])]


# --- plan_columns ----------------------------------------------------------------------------------

FIELDS = (
    TableField(name="email", type=FieldType.EMAIL, required=True),
    TableField(name="name", max_length=5),
    TableField(name="age", type=FieldType.INTEGER),
)


def mapping(*pairs: tuple[str, str]) -> list[FieldMapping]:
    return [FieldMapping(column=column, field=field) for column, field in pairs]


def test_plan_finds_columns_by_header_name() -> None:
    plan = plan_columns([" Age", "E-mail ", "Name"], mapping(("E-mail", "email"), ("Age", "age")), FIELDS)

    assert plan.width == 3
    assert [(position, f.name) for position, f in plan.positions] == [(1, "email"), (0, "age")]


def test_plan_refuses_missing_header_columns() -> None:
    with pytest.raises(BadFile) as error:
        plan_columns(["Email"], mapping(("Email", "email"), ("Years", "age"), ("Full", "name")), FIELDS)

    assert "Years" in error.value.message
    assert "Full" in error.value.message


def test_plan_refuses_unknown_fields() -> None:
    with pytest.raises(BadFile) as error:
        plan_columns(["Email", "Score"], mapping(("Email", "email"), ("Score", "score")), FIELDS)

    assert "score" in error.value.message


# --- map_record and coerce -------------------------------------------------------------------------


def field(kind: FieldType, **options: object) -> TableField:
    return TableField(name="f", type=kind, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        (FieldType.STRING, "hello world", "hello world"),
        (FieldType.INTEGER, "42", 42),
        (FieldType.INTEGER, "-7", -7),
        (FieldType.NUMBER, "3.25", 3.25),
        (FieldType.NUMBER, "-1e3", -1000.0),
        (FieldType.BOOLEAN, "true", True),
        (FieldType.BOOLEAN, "Yes", True),
        (FieldType.BOOLEAN, "Y", True),
        (FieldType.BOOLEAN, "t", True),
        (FieldType.BOOLEAN, "1", True),
        (FieldType.BOOLEAN, "FALSE", False),
        (FieldType.BOOLEAN, "no", False),
        (FieldType.BOOLEAN, "n", False),
        (FieldType.BOOLEAN, "f", False),
        (FieldType.BOOLEAN, "0", False),
        (FieldType.DATE, "2024-02-29", datetime(2024, 2, 29, 0, 0)),
        (FieldType.TIMESTAMP, "2024-02-29T13:45:10", datetime(2024, 2, 29, 13, 45, 10)),
        (FieldType.EMAIL, "Ann.Lee@Example.COM", "ann.lee@example.com"),
        (FieldType.PHONE, "+41 (44) 123-45-67", "+41441234567"),
        (FieldType.PHONE, "044 123 45 67", "0441234567"),
    ],
)
def test_coerce_converts_each_field_type(kind: FieldType, raw: str, expected: object) -> None:
    value = coerce(raw, field(kind))

    assert value == expected
    assert type(value) is type(expected)


def test_date_becomes_a_datetime_at_midnight() -> None:
    value = coerce("2024-07-01", field(FieldType.DATE))

    assert isinstance(value, datetime)
    assert (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)


def test_timestamp_keeps_its_offset() -> None:
    value = coerce("2024-07-01T08:00:00+02:00", field(FieldType.TIMESTAMP))

    assert value.utcoffset() is not None
    assert value.utcoffset().total_seconds() == 7200


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (FieldType.INTEGER, "4.2"),
        (FieldType.INTEGER, "twelve"),
        (FieldType.NUMBER, "1,5"),
        (FieldType.BOOLEAN, "maybe"),
        (FieldType.DATE, "01/02/2024"),
        (FieldType.DATE, "2023-02-29"),
        (FieldType.TIMESTAMP, "yesterday"),
        (FieldType.EMAIL, "not-an-email"),
        (FieldType.EMAIL, "a b@x.io"),
        (FieldType.PHONE, "call me"),
        (FieldType.PHONE, "12345"),
    ],
)
def test_coerce_refuses_invalid_values_with_the_value_in_the_reason(kind: FieldType, raw: str) -> None:
    with pytest.raises(ValueError, match=f"'{raw}'"):
        coerce(raw, field(kind))


def test_empty_value_is_none_unless_required() -> None:
    assert coerce("", field(FieldType.INTEGER)) is None

    with pytest.raises(ValueError, match="required value is empty"):
        coerce("", field(FieldType.INTEGER, required=True))


def test_max_length_is_checked() -> None:
    assert coerce("abcde", field(FieldType.STRING, max_length=5)) == "abcde"

    with pytest.raises(ValueError, match="longer than 5 characters"):
        coerce("abcdef", field(FieldType.STRING, max_length=5))


PLAN = plan_columns(
    ["Email", "Name", "Age"], mapping(("Email", "email"), ("Name", "name"), ("Age", "age")), FIELDS
)


def test_map_record_builds_a_row_of_coerced_trimmed_values() -> None:
    row = map_record(CsvRecord(2, [" Ann@X.io ", " Ann ", " 33 "]), PLAN)

    assert row == {"email": "ann@x.io", "name": "Ann", "age": 33}


def test_map_record_leaves_out_empty_optional_values() -> None:
    row = map_record(CsvRecord(2, ["ann@x.io", "", "  "]), PLAN)

    assert row == {"email": "ann@x.io"}


def test_required_empty_value_is_rejected_naming_the_field() -> None:
    rejection = map_record(CsvRecord(9, ["  ", "Ann", "33"]), PLAN)

    assert rejection == Rejection(9, "email", "required value is empty")


def test_too_long_value_is_rejected_naming_the_field() -> None:
    rejection = map_record(CsvRecord(4, ["ann@x.io", "Annabel", "33"]), PLAN)

    assert isinstance(rejection, Rejection)
    assert (rejection.line, rejection.field) == (4, "name")
    assert "longer than 5" in rejection.reason


def test_invalid_value_is_rejected_naming_the_field() -> None:
    rejection = map_record(CsvRecord(5, ["ann@x.io", "Ann", "old"]), PLAN)

    assert rejection == Rejection(5, "age", "'old' is not an integer")


@pytest.mark.parametrize("values", [["ann@x.io", "Ann"], ["ann@x.io", "Ann", "33", "extra"]])
def test_wrong_column_count_is_rejected_naming_the_columns(values: list[str]) -> None:
    rejection = map_record(CsvRecord(6, values), PLAN)

    assert isinstance(rejection, Rejection)
    assert rejection.line == 6
    assert rejection.field == "columns"
    assert f"expected 3 columns, found {len(values)}" == rejection.reason


def test_key_of_needs_every_key_value() -> None:
    assert key_of({"email": "a@x.io", "age": 3}, ["email"]) == ("a@x.io",)
    assert key_of({"email": "a@x.io", "age": 3}, ["email", "age"]) == ("a@x.io", 3)
    assert key_of({"age": 3}, ["email"]) is None


# --- tally, rejects and progress -------------------------------------------------------------------


def test_tally_succeeds_without_rejects_and_is_partial_with_them() -> None:
    tally = Tally(read=3, inserted=2, updated=1)
    assert tally.final_status() == RunStatus.SUCCEEDED

    tally.reject(Rejection(4, "email", "required value is empty"))

    assert tally.final_status() == RunStatus.PARTIAL
    assert tally.rejected == 1
    assert tally.written == 3
    assert tally.counts() == RunCounts(read=3, inserted=2, updated=1, rejected=1)


def folded(*lines: int) -> Item:
    """The last line's item with the earlier occurrences of its key folded into it (as the pipeline does)."""
    *earlier, last = lines
    return Item(0, last, {"k": 1}, earlier=tuple(Item(0, line, {"k": 1}) for line in earlier))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("insert", {"inserted": 1, "updated": 2, "unchanged": 0, "duplicates": 2}),  # new key, twice again
        ("update", {"inserted": 0, "updated": 3, "unchanged": 0, "duplicates": 2}),  # existed before the run
        (
            "duplicate",
            {"inserted": 0, "updated": 3, "unchanged": 0, "duplicates": 3},
        ),  # an earlier batch wrote it
        ("unchanged", {"inserted": 0, "updated": 0, "unchanged": 3, "duplicates": 0}),  # no_update
    ],
)
def test_every_occurrence_of_a_key_is_counted_once(kind: str, expected: dict[str, int]) -> None:
    outcome = WriteOutcome()
    later = "unchanged" if kind == "unchanged" else "duplicate"
    outcome.tally((kind, later, later))  # three occurrences of one key (`changes.plan_item`)
    assert {k: getattr(outcome, k) for k in expected} == expected


def test_a_rejected_item_rejects_the_occurrences_folded_into_it_at_their_own_lines() -> None:
    outcome = WriteOutcome()
    outcome.reject(folded(2, 5, 9), "EMAIL_ADDRESS_", "no matching record")
    assert [(r.line, r.field) for r in outcome.rejections] == [(2, "EMAIL_ADDRESS_"), (5, "EMAIL_ADDRESS_"),
                                                               (9, "EMAIL_ADDRESS_")]  # fmt: skip
    assert outcome.inserted == outcome.updated == outcome.unchanged == 0


def test_tally_counts_carry_unchanged_and_skipped_and_a_failed_run_wrote_nothing() -> None:
    tally = Tally(read=5, inserted=2, updated=1, unchanged=1, skipped=2)
    tally.reject(Rejection(3, "columns", "expected 3 columns, found 2"))
    assert tally.counts() == RunCounts(read=5, inserted=2, updated=1, unchanged=1, rejected=1, skipped=2)
    tally.nothing_written()
    assert tally.counts() == RunCounts(read=5, rejected=1, skipped=2)


def test_rejects_file_lines() -> None:
    lines = list(
        rejects_csv_lines([Rejection(4, "email", "bad"), Rejection(7, "columns", "expected 3 columns")])
    )

    assert lines == [
        ["line", "field", "reason"],
        ["4", "email", "bad"],
        ["7", "columns", "expected 3 columns"],
    ]


def test_rejects_path_sits_next_to_the_source() -> None:
    assert rejects_path("in/people.csv", "7.3") == "in/people.csv.7.3.rejects.csv"


def test_percent_milestone_steps_by_ten() -> None:
    assert percent_milestone(5, 100, 0) is None
    assert percent_milestone(10, 100, 0) == 10
    assert percent_milestone(19, 100, 10) is None
    assert percent_milestone(35, 100, 10) == 30
    assert percent_milestone(100, 100, 90) == 100
    assert percent_milestone(150, 100, 90) == 100
    assert percent_milestone(100, 100, 100) is None


def test_percent_milestone_without_a_known_size() -> None:
    assert percent_milestone(500, None, 0) is None
    assert percent_milestone(500, 0, 0) is None


def test_percent_milestones_over_a_whole_file_are_each_reported_once() -> None:
    reported, last = [], 0
    for done in range(0, 1001, 7):
        if (reached := percent_milestone(done, 1000, last)) is not None:
            reported.append(reached)
            last = reached
    if (reached := percent_milestone(1000, 1000, last)) is not None:
        reported.append(reached)

    assert reported == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_plan_takes_numbered_columns_and_date_formats() -> None:
    fields = (TableField(name="day", type=FieldType.DATE), TableField(name="name"))
    plan = plan_columns(
        ["a", "b"], [FieldMapping(column="2", field="day", date_format="%d/%m/%Y"), FieldMapping(column="a", field="name")],
        fields,
    )  # fmt: skip
    assert map_record(CsvRecord(2, ["Ann", "31/12/2023"]), plan) == {
        "day": datetime(2023, 12, 31),
        "name": "Ann",
    }
    rejection = map_record(CsvRecord(3, ["Ann", "2023-12-31"]), plan)
    assert rejection == Rejection(3, "day", "'2023-12-31' does not match the date format '%d/%m/%Y'")
