"""The raw record kept with each reject: written back as a line of its file, cut to a readable length."""

from __future__ import annotations

import csv

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.executor.domain.adobe import split_hit_line
from services.executor.domain.records import RECORD_LIMIT, clip_record, hit_record_text, record_text
from tests.conftest import examples

VALUE = st.text(alphabet=st.sampled_from("ab ;,|\"'\t\r\n\\é"), max_size=8)


@settings(max_examples=examples(200))
@given(values=st.lists(VALUE, min_size=1, max_size=6), delimiter=st.sampled_from([",", ";", "|", "\t"]))
def test_a_record_written_back_reads_as_the_same_values(values: list[str], delimiter: str) -> None:
    assume(values != [""])  # an empty line is no record: the splitter skips it
    text = record_text(values, delimiter, '"')
    if len(text) < RECORD_LIMIT:
        assert next(csv.reader([text], delimiter=delimiter, quotechar='"', strict=True)) == values


def test_plain_records_are_joined_and_only_values_that_need_it_are_quoted() -> None:
    assert record_text(["C1", "ann@x.io", " 3 "], ";", '"') == "C1;ann@x.io; 3 "
    assert record_text(["C1", 'say "hi"', "a;b"], ";", '"') == 'C1;"say ""hi""";"a;b"'
    assert record_text(["a,b"], ";", "'") == "a,b"


def test_long_records_are_cut_and_say_so() -> None:
    assert clip_record("x" * RECORD_LIMIT) == "x" * RECORD_LIMIT
    cut = record_text(["y" * 3000, "z"], ",", '"')
    assert cut == "y" * RECORD_LIMIT + "… [cut: 3,002 characters]"


@settings(max_examples=examples(100))
@given(values=st.lists(VALUE, min_size=1, max_size=6))
def test_a_partner_feed_record_is_the_escaped_hit_line(values: list[str]) -> None:
    values = [v.replace("\r", "") for v in values]  # hit lines end at "\n"; "\r" is data
    text = hit_record_text(values)
    if len(text) < RECORD_LIMIT:
        assert split_hit_line(text) == values
        assert "\n" not in text
